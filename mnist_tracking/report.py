"""Sweep reports from the tracking store: a table of a sweep's jobs and their validation curves.

    python -m mnist_tracking.report                    # the latest sweep in ./mlruns (or $MLFLOW_TRACKING_URI)
    python -m mnist_tracking.report --sweep <parent run id> --out sweep-report/
    python -m mnist_tracking.report --stale --older-than 3600 [--mark-failed]   # runs left RUNNING by kill -9
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mnist_tracking.ml import figures
from mnist_tracking.names import (CURVES, OPTIMIZABLE_METRICS, OPTIMIZED_DIRECTION_TAG, OPTIMIZED_METRIC_TAG,
                                  OVERRIDES_TAG, PARENT_RUN_TAG, REUSED_TAG_PREFIX, SUPERSEDED_TAG, SWEEP_TAG,
                                  SWEPT_KEYS_TAG)
from mnist_tracking.errors import ConfigError
from mnist_tracking.tracking.store import existing_store, resolve_tracking_uri

log = logging.getLogger(__name__)


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
    children = [run for run in client.search_runs([parent.info.experiment_id], max_results=10_000,
                                                  filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'")
                if SUPERSEDED_TAG not in run.data.tags]  # a stopped job's run that a newer run of it replaced
    reused = [client.get_run(key.removeprefix(REUSED_TAG_PREFIX))
              for key in parent.data.tags if key.startswith(REUSED_TAG_PREFIX)]
    keys = swept_keys(parent)
    reused_ids = {r.info.run_id for r in reused}
    rows, curves, histories = [], {name: {} for name in CURVES}, {}
    for run in [*children, *reused]:
        values = _job_values(run, keys)
        label = ",".join(f"{k}={v}" for k, v in values.items()) or run.info.run_name
        history = {name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, name),
                                                  key=lambda m: m.step)] for name in CURVES}
        for name in CURVES:
            curves[name][label] = history[name]
        histories[run.info.run_id] = history
        end = run.info.end_time or run.info.start_time
        rows.append({
            **values,
            **{name: run.data.metrics.get(name) for name in OPTIMIZABLE_METRICS},
            "epochs": len(history["val_loss"]),
            "wall_time_s": round((end - run.info.start_time) / 1000, 1),
            "run_id": run.info.run_id,
            "status": run.info.status,
            "reused": run.info.run_id in reused_ids,
        })
    columns = [*keys, *OPTIMIZABLE_METRICS, "epochs", "wall_time_s", "run_id", "status", "reused"]
    table = pd.DataFrame(rows, columns=columns)
    if not table.empty:
        table = table.sort_values(metric, ascending=minimize, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    if SEED not in keys:
        return SweepReport(parent, table, curves)
    groups, bands = seed_groups(table, histories, [key for key in keys if key != SEED], metric, minimize)
    return SweepReport(parent, table, curves, groups, bands)


def seed_groups(table: pd.DataFrame, histories: dict[str, dict[str, list[float]]], keys: list[str], metric: str,
                minimize: bool) -> tuple[pd.DataFrame, dict[str, dict[str, tuple[list[float], list[float]]]]]:
    """The FINISHED jobs grouped by `keys` (all but seed), best mean of `metric` first: per group the number of
    seeds, `<metric>_mean` and `<metric>_std` (sample std; empty for one seed) of every final metric, and the
    median-seed run; and each group's mean and std curve per epoch.
    """
    finished = table[table["status"] == "FINISHED"]
    rows, bands = [], {name: {} for name in CURVES}
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
    columns = [*keys, "n_seeds", "seeds", *(f"{name}_{stat}" for name in OPTIMIZABLE_METRICS for stat in ("mean", "std")),
               "median_run_id"]
    groups = pd.DataFrame(rows, columns=columns)
    if not groups.empty:
        groups = groups.sort_values(f"{metric}_mean", ascending=minimize, na_position="last", kind="stable")
    return groups.reset_index(drop=True), bands


def latest_sweep(client: mlflow.MlflowClient, experiment_name: str) -> str:
    """The run id of the most recently started sweep parent in the experiment."""
    experiment = client.get_experiment_by_name(experiment_name)
    found = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{SWEEP_TAG} = 'true'", order_by=["attributes.start_time DESC"],
        max_results=1)
    if not found:
        raise SystemExit(f"No sweep found in experiment {experiment_name!r}: run one with `python -m mnist_tracking.train -m ...`.")
    return found[0].info.run_id


def stale_runs(client: mlflow.MlflowClient, experiment_name: str, older_than_s: float) -> pd.DataFrame:
    """RUNNING runs with no sign of life (start, or latest metric) for `older_than_s` seconds.

    A process killed with SIGKILL, or a machine that died, leaves its run RUNNING forever.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    running = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000)
    now_ms = time.time() * 1000
    rows = []
    for run in running:
        last_ms = max([run.info.start_time, *(m.timestamp for name in run.data.metrics
                                               for m in client.get_metric_history(run.info.run_id, name))])
        idle_s = (now_ms - last_ms) / 1000
        if idle_s >= older_than_s:
            rows.append({"run_id": run.info.run_id, "run_name": run.info.run_name, "idle_s": round(idle_s)})
    return pd.DataFrame(rows, columns=["run_id", "run_name", "idle_s"])


def main(argv: list[str] | None = None) -> None:
    """Rebuilds a sweep's report from the tracking store: prints the table, writes CSV and figures."""
    parser = argparse.ArgumentParser(prog="python -m mnist_tracking.report", description=main.__doc__)
    parser.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db")
    parser.add_argument("--experiment", default="mnist", help="where to look for the latest sweep (default: mnist)")
    parser.add_argument("--out", type=Path, help="folder for summary.csv and the figures (default: sweep-report/<id>)")
    parser.add_argument("--stale", action="store_true",
                        help="instead: list RUNNING runs with no activity for --older-than seconds")
    parser.add_argument("--older-than", type=float, default=3600, help="with --stale (default: 3600)")
    parser.add_argument("--mark-failed", action="store_true", help="with --stale: end the listed runs as FAILED")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:  # only reads: a folder with no store gets no empty one
        client = existing_store(resolve_tracking_uri(args.tracking_uri, Path.cwd()))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    if args.stale:
        stale = stale_runs(client, args.experiment, args.older_than)
        print(f"{len(stale)} RUNNING run(s) in {args.experiment!r} idle for {args.older_than:g} s or more"
              + (":" if len(stale) else "."))
        if len(stale):
            print(stale.to_string(index=False))
        for run_id in stale["run_id"] if args.mark_failed else []:
            client.set_terminated(run_id, "FAILED")
            log.info("Marked %s FAILED", run_id)
        return
    parent_id = args.sweep or latest_sweep(client, args.experiment)
    report = build_report(client, parent_id)
    out = args.out or Path("sweep-report") / parent_id
    out.mkdir(parents=True, exist_ok=True)
    report.table.to_csv(out / "summary.csv", index=False)
    written = [out / "summary.csv"]
    for metric in CURVES:
        figures.sweep_curves(report.curves[metric], metric, f"sweep {parent_id}: {metric}").savefig(out / f"{metric}.png")
        written.append(out / f"{metric}.png")
    if report.groups is not None:
        report.groups.to_csv(out / "groups.csv", index=False)
        written.append(out / "groups.csv")
        for metric in CURVES:
            figures.seed_bands(report.bands[metric], metric, f"sweep {parent_id}: {metric}, mean ± std over seeds"
                               ).savefig(out / f"{metric}_by_seed_group.png")
            written.append(out / f"{metric}_by_seed_group.png")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(f"Sweep {parent_id} ({report.parent.info.status}), {len(report.table)} jobs, best first:")
        print(report.table.to_string(index=False))
        if report.groups is not None:
            print(f"\n{len(report.groups)} groups of jobs that differ only in seed, best mean first "
                  f"(best run: the median seed of the first):")
            print(report.groups.to_string(index=False))
    log.info("Wrote %s", ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main())
