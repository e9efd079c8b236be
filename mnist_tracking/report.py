"""Sweep reports from the tracking store: a table of a sweep's jobs and their validation curves.

python -m mnist_tracking.report                    # the latest sweep in ./mlruns (or $MLFLOW_TRACKING_URI)
python -m mnist_tracking.report --sweep <parent run id> --out sweep-report/
python -m mnist_tracking.report --stale --older-than 3600 [--mark-failed]   # runs left RUNNING by kill -9
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml import figures
from mnist_tracking.names import CURVES, PARALLEL_COORDINATES_ARTIFACT, SWEEP_TAG
from mnist_tracking.sweeps.report import build_report
from mnist_tracking.tracking.store import existing_store, resolve_tracking_uri

log = logging.getLogger(__name__)


def latest_sweep(client: mlflow.MlflowClient, experiment_name: str) -> str:
    """The run id of the most recently started sweep parent in the experiment."""
    experiment = client.get_experiment_by_name(experiment_name)
    found = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.{SWEEP_TAG} = 'true'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not found:
        raise SystemExit(
            f"No sweep found in experiment {experiment_name!r}: run one with `python -m mnist_tracking.train -m ...`."
        )
    return found[0].info.run_id


def stale_runs(client: mlflow.MlflowClient, experiment_name: str, older_than_s: float) -> pd.DataFrame:
    """RUNNING runs with no sign of life (start, or latest metric) for `older_than_s` seconds.

    A process killed with SIGKILL, or a machine that died, leaves its run RUNNING forever.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    running = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000
        )
    )
    now_ms = time.time() * 1000
    rows = []
    for run in running:
        last_ms = max(
            [
                run.info.start_time,
                *(m.timestamp for name in run.data.metrics for m in client.get_metric_history(run.info.run_id, name)),
            ]
        )
        idle_s = (now_ms - last_ms) / 1000
        if idle_s >= older_than_s:
            rows.append({"run_id": run.info.run_id, "run_name": run.info.run_name, "idle_s": round(idle_s)})
    return pd.DataFrame(rows, columns=["run_id", "run_name", "idle_s"])


def main(argv: list[str] | None = None) -> None:
    """Rebuilds a sweep's report from the tracking store: prints the table and what mattered, writes CSV and figures."""
    parser = argparse.ArgumentParser(prog="python -m mnist_tracking.report", description=main.__doc__)
    parser.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db")
    parser.add_argument("--experiment", default="mnist", help="where to look for the latest sweep (default: mnist)")
    parser.add_argument("--out", type=Path, help="folder for summary.csv and the figures (default: sweep-report/<id>)")
    parser.add_argument(
        "--stale", action="store_true", help="instead: list RUNNING runs with no activity for --older-than seconds"
    )
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
        print(
            f"{len(stale)} RUNNING run(s) in {args.experiment!r} idle for {args.older_than:g} s or more"
            + (":" if len(stale) else ".")
        )
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
        figures.sweep_curves(report.curves[metric], metric, f"sweep {parent_id}: {metric}").savefig(
            out / f"{metric}.png"
        )
        written.append(out / f"{metric}.png")
    if report.groups is not None:
        assert report.bands is not None, "build_report sets bands with groups"
        report.groups.to_csv(out / "groups.csv", index=False)
        written.append(out / "groups.csv")
        for metric in CURVES:
            figures.seed_bands(
                report.bands[metric], metric, f"sweep {parent_id}: {metric}, mean ± std over seeds"
            ).savefig(out / f"{metric}_by_seed_group.png")
            written.append(out / f"{metric}_by_seed_group.png")
    found = report.importances()
    if not found.skipped:
        found.frame().to_csv(out / "importance.csv", index=False)
        written.append(out / "importance.csv")
    figure = report.parallel_coordinates(f"sweep {parent_id}\n")  # the id on a line of its own: it is long
    if figure is not None:
        figure.savefig(out / Path(PARALLEL_COORDINATES_ARTIFACT).name)
        written.append(out / Path(PARALLEL_COORDINATES_ARTIFACT).name)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(f"Sweep {parent_id} ({report.parent.info.status}), {len(report.table)} jobs, best first:")
        print(report.table.to_string(index=False))
        if report.groups is not None:
            print(
                f"\n{len(report.groups)} groups of jobs that differ only in seed, best mean first "
                f"(best run: the median seed of the first):"
            )
            print(report.groups.to_string(index=False))
        print(f"\nImportance of each swept key for {report.metric} (fANOVA over the finished jobs)", end="")
        print(f": skipped, {found.skipped}." if found.skipped else ", summing to 1:")
        if not found.skipped:
            print(found.frame().to_string(index=False))
    log.info("Wrote %s", ", ".join(map(str, written)))


if __name__ == "__main__":
    main()  # returns None: exit status 0, as sys.exit(None) gave
