"""A job's MLflow run: its tags, its config, its reuse by a later sweep, and how it always ends."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from mnist_tracking.errors import DivergedError, RunFailedError
from mnist_tracking.ml.data import Dataset
from mnist_tracking.names import (
    ATTEMPTS_TAG,
    CONFIG_HASH_TAG,
    DIVERGED_TAG,
    FAILURE_REASON_TAG,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    REUSED_TAG_PREFIX,
)
from mnist_tracking.runtime import speedups
from mnist_tracking.runtime.job import Job
from mnist_tracking.runtime.redaction import redact
from mnist_tracking.tracking import ending, resume
from mnist_tracking.tracking.identity import config_hash, source_tags
from mnist_tracking.tracking.inputs import datasets, log_config, log_datasets
from mnist_tracking.tracking.labels import user_tags
from mnist_tracking.tracking.resume import owner_tags
from mnist_tracking.tracking.store import ui_command

log = logging.getLogger(__name__)


class SigtermAsInterrupt:
    """While installed, SIGTERM raises KeyboardInterrupt as Ctrl-C does; `restore` brings the previous handler back.

    A plain `kill` would otherwise end the process at once, leaving its runs RUNNING. Signals reach only
    the main thread, so elsewhere (a launcher's worker thread) this does nothing. Also a context manager.
    """

    def __init__(self) -> None:
        self.previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None

    def __enter__(self) -> SigtermAsInterrupt:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()


def run_tags(job: Job, cfg: DictConfig) -> dict[str, str]:
    """Tags that say where a run came from, how to run it again, which sweep it belongs to, and what the user says
    about it (`tags`, `notes`)."""
    tags = {
        **source_tags(job.launch_dir, job.overrides, one_job=True),
        OVERRIDES_TAG: json.dumps(redact(job.overrides)),
        CONFIG_HASH_TAG: config_hash(cfg),
        **user_tags(cfg),
    }
    if cfg.mlflow.get("parent_run_id"):
        tags[PARENT_RUN_TAG] = cfg.mlflow.parent_run_id
    return tags


def open_run(
    tracking_uri: str, experiment_id: str, job: Job, cfg: DictConfig, stopped: mlflow.entities.Run | None
) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
    """`tracked_run` for a job: a new run with its tags, or the `stopped` run continued (it keeps its tags: its
    command, overrides and parent; the owner changes, and this command's `tags` and `notes` are added)."""
    interval = cfg.mlflow.system_metrics_interval if cfg.mlflow.log_system_metrics else None
    return tracked_run(
        tracking_uri,
        experiment_id,
        job.name,
        user_tags(cfg) if stopped else run_tags(job, cfg),
        run_id=stopped.info.run_id if stopped else None,
        system_metrics_interval=interval,
    )


def record_inputs(
    run: mlflow.ActiveRun, cfg: DictConfig, job: Job, data: Dataset, stopped: mlflow.entities.Run | None
) -> mlflow.data.Dataset:
    """Logs what a run trains with: its config (params and YAML) and, for a new run, its datasets; marks this
    job's stopped runs in its sweep that could not be continued as superseded. Returns the test set's MLflow
    dataset, which the test metrics are logged against."""
    log_config(cfg, job.overrides, logged=stopped.data.params if stopped else None)
    splits = datasets(data)
    if not stopped:  # a continued run has them already
        tracking_uri = mlflow.get_tracking_uri()
        log_datasets(splits, tracking_uri)
        resume.supersede(tracking_uri, run.info.experiment_id, cfg, run.info.run_id)
    return splits["testing"]


def announce(run: mlflow.ActiveRun, metrics: Mapping[str, float]) -> None:
    """Logs where to see a run that ended: its test and validation accuracy, and the command that shows it."""
    log.info(
        "MLflow run %s: test_accuracy=%.4f val_accuracy=%.4f",
        run.info.run_id,
        metrics["test_accuracy"],
        metrics["val_accuracy"],
    )
    log.info(
        "See it with: %s  (experiment %s, run %s)",
        ui_command(mlflow.get_tracking_uri()),
        run.info.experiment_id,
        run.info.run_id,
    )


def find_finished_run(
    tracking_uri: str, experiment_id: str, cfg: DictConfig, continued: bool | None = None
) -> mlflow.entities.Run | None:
    """A FINISHED run that makes this job's training unnecessary, or None.

    With `sweep.skip_finished`: the latest FINISHED run of the same config in the experiment. In a sweep
    that continues a stopped one: the job's own FINISHED run in it. `continued`: whether the sweep parent is a
    stopped one being continued; None: its attempts say (more than one), as a claimed parent's do.
    """
    client = mlflow.MlflowClient(tracking_uri)
    query = f"tags.{CONFIG_HASH_TAG} = '{config_hash(cfg)}' and attributes.status = 'FINISHED'"
    parent = cfg.mlflow.get("parent_run_id")
    if not cfg.sweep.skip_finished:
        if continued is None:
            continued = bool(parent) and int(client.get_run(parent).data.tags.get(ATTEMPTS_TAG, "1")) >= 2
        if not parent or not continued:
            return None
        query += f" and tags.`{PARENT_RUN_TAG}` = '{parent}'"
    found = client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0] if found else None


def reuse_run(
    tracking_uri: str, run: mlflow.entities.Run, parent_run_id: str | None, job_name: str
) -> dict[str, float]:
    """Lets a FINISHED run stand for a job: links it to the sweep (unless it is in it already); returns its metrics."""
    log.info("Skipping %s: run %s already FINISHED with the same config", job_name, run.info.run_id)
    if parent_run_id and run.data.tags.get(PARENT_RUN_TAG) != parent_run_id:
        mlflow.MlflowClient(tracking_uri).set_tag(parent_run_id, REUSED_TAG_PREFIX + run.info.run_id, job_name)
    return dict(run.data.metrics)


@contextlib.contextmanager
def tracked_run(
    tracking_uri: str,
    experiment_id: str,
    name: str,
    tags: dict[str, str],
    run_id: str | None = None,
    system_metrics_interval: float | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """The active MLflow run of a job (a new one, or `run_id` continued); it ends FINISHED, FAILED on an
    exception (tag `failure_reason`), or KILLED on Ctrl-C/SIGTERM.

    An exception leaves as RunFailedError (the original chained), so a sweep knows the failure is on record.
    `system_metrics_interval`: seconds between MLflow's system-metrics samples (CPU, memory, GPU); None: none.
    """
    # MLflow's fluent API (start_run, log_model, log_figure) reads the process-wide URI: set it here, in the open.
    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=None if run_id else name,
        tags={**tags, **owner_tags()},
        log_system_metrics=False,
    )
    monitor = system_metrics_interval and speedups.system_metrics_monitor(
        tracking_uri, run.info.run_id, system_metrics_interval, resumed=run_id is not None
    )
    status, failure = RunStatus.FINISHED, None
    try:
        with SigtermAsInterrupt():
            yield run
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except Exception as exc:
        status, failure = RunStatus.FAILED, exc
        _record_failure(run.info.run_id, exc)
    except BaseException:  # SystemExit and the like: still not a finished run
        status = RunStatus.FAILED
        raise
    finally:
        recorded = _end_run(tracking_uri, run.info.run_id, status, monitor)
    if failure is not None:
        raise RunFailedError(run.info.run_id, failure, recorded) from failure


def _record_failure(run_id: str, exc: Exception) -> None:
    """Tags the active run with why it failed (`failure_reason`; `diverged` for a loss that stopped being finite)."""
    reason = str(exc) if isinstance(exc, DivergedError) else f"{type(exc).__name__}: {exc}"
    try:
        mlflow.set_tags(
            {FAILURE_REASON_TAG: reason[:5000], **({DIVERGED_TAG: "true"} if isinstance(exc, DivergedError) else {})}
        )
    except Exception:  # the store may be what failed: the original error is the one to report
        log.exception("Could not record why run %s failed", run_id)


def _end_run(tracking_uri: str, run_id: str, status: int, monitor: Any) -> bool:
    """Ends the active run with `status`, its system metrics first; whether the store took the status.

    A store that refuses a FINISHED run raises; one that refuses a failed or killed run (a permission lost) is
    logged, so that the run's own error goes on.
    """
    ending.arm(tracking_uri, run_id)  # a server that stops answering now cannot hold the command for long
    try:
        if monitor:  # its last samples are on record before the run ends (mlflow.end_run flushes them after)
            monitor.finish()
        level = logging.INFO if status == RunStatus.FINISHED else logging.ERROR
        log.log(level, "MLflow run %s ended %s", run_id, RunStatus.to_string(status))
        try:
            mlflow.end_run(RunStatus.to_string(status))
        except MlflowException as exc:
            if status == RunStatus.FINISHED:
                raise
            log.error("Could not record run %s as %s: %s", run_id, RunStatus.to_string(status), exc)
            return False
        return True
    finally:
        ending.disarm()
