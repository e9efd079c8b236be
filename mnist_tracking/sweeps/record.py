"""What a sweep's end records on its parent run: the report's tables and figures, the best job, what mattered."""

from __future__ import annotations

import json
import logging
import math
import time

import mlflow

from mnist_tracking.ml import figures
from mnist_tracking.names import (
    BEST_RUN_TAG,
    BEST_VALUE_TAG_PREFIX,
    CURVES,
    FAILED_JOBS_TAG,
    IMPORTANCE_METRIC_PREFIX,
    JOBS_PARAM,
    PARALLEL_COORDINATES_ARTIFACT,
)
from mnist_tracking.sweeps.report import SweepReport, swept_keys

log = logging.getLogger(__name__)


def log_report(client: mlflow.MlflowClient, sweep: SweepReport) -> None:
    """Logs the report to the sweep's parent run: the table, the jobs that failed, the best job, every job's curves,
    the seed groups, each swept key's importance and the parallel-coordinates figure."""
    parent_run_id, table = sweep.parent.info.run_id, sweep.table
    if sweep.parent.data.params.get(JOBS_PARAM, str(len(table))) == str(len(table)):
        client.log_param(parent_run_id, JOBS_PARAM, len(table))  # a continued sweep may have logged it
    client.log_table(parent_run_id, data=table, artifact_file="sweep/summary.json")
    client.log_text(parent_run_id, table.to_csv(index=False), "sweep/summary.csv")
    failed = table[table["status"] != "FINISHED"]
    if len(failed):
        client.set_tag(parent_run_id, FAILED_JOBS_TAG, json.dumps(failed["run_id"].tolist()))
    _log_best(client, sweep)
    for metric in CURVES:
        figure = figures.sweep_curves(sweep.curves[metric], metric, f"{metric} per epoch, every job")
        client.log_figure(parent_run_id, figure, f"sweep/{metric}.png")
    if sweep.groups is not None:  # the sweep varies seed: the jobs that differ only in it, as one row
        client.log_table(parent_run_id, data=sweep.groups, artifact_file="sweep/groups.json")
        client.log_text(parent_run_id, sweep.groups.to_csv(index=False), "sweep/groups.csv")
        assert sweep.bands is not None, "build_report sets bands with groups"
        for metric in CURVES:
            figure = figures.seed_bands(sweep.bands[metric], metric, f"{metric} per epoch, mean ± std over seeds")
            client.log_figure(parent_run_id, figure, f"sweep/{metric}_by_seed_group.png")
    _log_importances(client, sweep)


def _log_best(client: mlflow.MlflowClient, sweep: SweepReport) -> None:
    """The best job's run id, swept values and score; nothing when no job finished."""
    best, parent_run_id, metric = sweep.best, sweep.parent.info.run_id, sweep.metric
    if best is None:
        return
    client.set_tag(parent_run_id, BEST_RUN_TAG, best["run_id"])
    for key in swept_keys(sweep.parent):
        client.set_tag(parent_run_id, f"{BEST_VALUE_TAG_PREFIX}{key}", str(best[key]))
    if best.get(metric) is not None and not math.isnan(best[metric]):
        client.log_metric(parent_run_id, f"best_{metric}", float(best[metric]))


def _log_importances(client: mlflow.MlflowClient, sweep: SweepReport) -> None:
    """Each swept key's importance as a metric (or, at INFO, why there is none), and the parallel coordinates."""
    parent_run_id, found = sweep.parent.info.run_id, sweep.importances()
    if found.skipped:
        log.info("No importance of the swept keys for %s: %s", sweep.metric, found.skipped)
    now = int(time.time() * 1000)
    metrics = [mlflow.entities.Metric(f"{IMPORTANCE_METRIC_PREFIX}{k}", v, now, 0) for k, v in found.values.items()]
    client.log_batch(parent_run_id, metrics=metrics)
    figure = sweep.parallel_coordinates()
    if figure is not None:
        client.log_figure(parent_run_id, figure, PARALLEL_COORDINATES_ARTIFACT)
