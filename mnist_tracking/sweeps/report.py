"""A sweep's report, built from the store: one row per job, best first, with validation curves and seed groups."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd

from mnist_tracking.names import (
    BEST_EPOCH_METRIC,
    BEST_METRIC,
    CURVES,
    OPTIMIZABLE_METRICS,
    OPTIMIZED_DIRECTION_TAG,
    OPTIMIZED_METRIC_TAG,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    REUSED_TAG_PREFIX,
    SUPERSEDED_TAG,
    SWEPT_KEYS_TAG,
)
from mnist_tracking.sweeps import importance

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEED = "seed"  # the key whose values a seed-aware report averages over


@dataclass
class SweepReport:
    """One sweep's jobs (a row each, best first) and each job's per-epoch validation curves.

    When the sweep varies `seed`: `groups`, a row per set of jobs that differ only in seed (best mean first),
    and `bands`, each group's mean and std per epoch.
    """

    parent: mlflow.entities.Run
    table: pd.DataFrame
    curves: dict[str, dict[str, list[float]]]  # metric -> job label -> values per epoch
    groups: pd.DataFrame | None = None
    bands: dict[str, dict[str, tuple[list[float], list[float]]]] | None = None  # metric -> group -> (mean, std)

    @property
    def best(self) -> pd.Series | None:
        """The best job; with seed groups, the median-seed job of the group with the best mean."""
        finished = self.table[self.table["status"] == "FINISHED"]
        if finished.empty:
            return None
        if self.groups is not None and not self.groups.empty:
            return finished[finished["run_id"] == self.groups.iloc[0]["median_run_id"]].iloc[0]
        return finished.iloc[0]

    @property
    def metric(self) -> str:
        """The metric the sweep ranks its jobs by."""
        return self.parent.data.tags[OPTIMIZED_METRIC_TAG]

    @property
    def direction(self) -> str:
        """`maximize` or `minimize` the metric."""
        return self.parent.data.tags.get(OPTIMIZED_DIRECTION_TAG, "maximize")

    def importances(self) -> importance.Importances:
        """What mattered: each swept key's fANOVA importance for the metric, or why there is none."""
        return importance.importances(self.table, swept_keys(self.parent), self.metric, self.direction)

    def parallel_coordinates(self, title_prefix: str = "") -> Figure | None:
        """Every finished job's swept values and metric, one line each; None with no finished job."""
        return importance.parallel_coordinates(
            self.table, swept_keys(self.parent), self.metric, self.direction, title_prefix
        )


def swept_keys(parent: mlflow.entities.Run) -> list[str]:
    return json.loads(parent.data.tags.get(SWEPT_KEYS_TAG, "[]"))


def _job_values(run: mlflow.entities.Run, keys: list[str]) -> dict[str, str]:
    """The swept keys' values for one job, from its overrides tag, else its params."""
    pairs = (item.split("=", 1) for item in json.loads(run.data.tags.get(OVERRIDES_TAG, "[]")) if "=" in item)
    overrides = {key.lstrip("+~"): value for key, value in pairs}
    return {key: overrides.get(key, run.data.params.get(key, "")) for key in keys}


def build_report(client: mlflow.MlflowClient, parent_run_id: str) -> SweepReport:
    """Collects a sweep's child runs and the earlier runs it reused, sorted by its optimized metric."""
    parent = client.get_run(parent_run_id)
    metric = parent.data.tags[OPTIMIZED_METRIC_TAG]
    minimize = parent.data.tags.get(OPTIMIZED_DIRECTION_TAG) == "minimize"
    best_score = BEST_METRIC.format(metric)  # logged by jobs as they train; absent from older runs
    children = [
        run
        for run in client.search_runs(
            [parent.info.experiment_id],
            max_results=10_000,
            filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'",
        )
        if SUPERSEDED_TAG not in run.data.tags
    ]  # a stopped job's run that a newer run of it replaced
    reused = [
        client.get_run(key.removeprefix(REUSED_TAG_PREFIX))
        for key in parent.data.tags
        if key.startswith(REUSED_TAG_PREFIX)
    ]
    keys = swept_keys(parent)
    reused_ids = {r.info.run_id for r in reused}
    rows: list[dict[str, object]] = []
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in CURVES}
    histories: dict[str, dict[str, list[float]]] = {}
    for run in [*children, *reused]:
        values = _job_values(run, keys)
        label = ",".join(f"{k}={v}" for k, v in values.items()) or run.info.run_name
        history = {
            name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
            for name in CURVES
        }
        for name in CURVES:
            curves[name][label] = history[name]
        histories[run.info.run_id] = history
        end = run.info.end_time or run.info.start_time
        rows.append(
            {
                **values,
                **{name: run.data.metrics.get(name) for name in OPTIMIZABLE_METRICS},
                best_score: run.data.metrics.get(best_score),
                BEST_EPOCH_METRIC: run.data.metrics.get(BEST_EPOCH_METRIC),
                "epochs": len(history["val_loss"]),
                "wall_time_s": round((end - run.info.start_time) / 1000, 1),
                "run_id": run.info.run_id,
                "status": run.info.status,
                "reused": run.info.run_id in reused_ids,
            }
        )
    columns = [
        *keys,
        *OPTIMIZABLE_METRICS,
        best_score,
        BEST_EPOCH_METRIC,
        "epochs",
        "wall_time_s",
        "run_id",
        "status",
        "reused",
    ]
    table = pd.DataFrame(rows, columns=columns)
    if not table.empty:
        table = table.sort_values(metric, ascending=minimize, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    if SEED not in keys:
        return SweepReport(parent, table, curves)
    groups, bands = seed_groups(table, histories, [key for key in keys if key != SEED], metric, minimize)
    return SweepReport(parent, table, curves, groups, bands)


def seed_groups(
    table: pd.DataFrame, histories: dict[str, dict[str, list[float]]], keys: list[str], metric: str, minimize: bool
) -> tuple[pd.DataFrame, dict[str, dict[str, tuple[list[float], list[float]]]]]:
    """The FINISHED jobs grouped by `keys` (all but seed), best mean of `metric` first: per group the number of
    seeds, `<metric>_mean` and `<metric>_std` (sample std; empty for one seed) of every final metric, and the
    median-seed run; and each group's mean and std curve per epoch.
    """
    finished = table[table["status"] == "FINISHED"]
    rows: list[dict[str, object]] = []
    bands: dict[str, dict[str, tuple[list[float], list[float]]]] = {name: {} for name in CURVES}
    for values, jobs in finished.groupby(keys, sort=False) if keys else [((), finished)]:
        values = dict(zip(keys, values))
        ranked = jobs.sort_values(metric, kind="stable")  # ascending: the middle one is the median either way
        median = ranked.iloc[(len(ranked) - 1) // 2]
        seeds = sorted(map(str, jobs[SEED]), key=lambda seed: (len(seed), seed))  # 2 before 10
        row = {**values, "n_seeds": len(jobs), "seeds": " ".join(seeds)}
        for name in OPTIMIZABLE_METRICS:
            row |= {f"{name}_mean": jobs[name].mean(), f"{name}_std": jobs[name].std(ddof=1)}
        rows.append(row | {"median_run_id": median["run_id"]})
        label = ",".join(f"{k}={v}" for k, v in values.items()) or "all seeds"
        for name in CURVES:
            per_seed = [histories[run_id][name] for run_id in jobs["run_id"]]
            length = min(map(len, per_seed))  # a reused run of a shorter job has fewer epochs
            stacked = np.array([curve[:length] for curve in per_seed])
            spread = stacked.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(length)
            bands[name][label] = (stacked.mean(axis=0).tolist(), spread.tolist())
    columns = [
        *keys,
        "n_seeds",
        "seeds",
        *(f"{name}_{stat}" for name in OPTIMIZABLE_METRICS for stat in ("mean", "std")),
        "median_run_id",
    ]
    groups = pd.DataFrame(rows, columns=columns)
    if not groups.empty:
        groups = groups.sort_values(f"{metric}_mean", ascending=minimize, na_position="last", kind="stable")
    return groups.reset_index(drop=True), bands
