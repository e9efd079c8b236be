"""A Hydra callback that makes a multirun one MLflow experiment: a parent run, nested jobs, a report."""

from __future__ import annotations

import atexit
import json
import logging
import sys
from pathlib import Path
from typing import Any

import mlflow
from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from mnist_tracking.config.checks import check_sweep
from mnist_tracking.errors import ConfigError
from mnist_tracking.names import (
    ATTEMPTS_TAG,
    CHAMPION_ALIAS,
    CHAMPION_TAG,
    LAUNCHER_TAG,
    OPTIMIZED_DIRECTION_TAG,
    OPTIMIZED_METRIC_TAG,
    PARENT_RUN_TAG,
    PROMOTED_TAG,
    PROMOTION_REASON_TAG,
    REGISTERED_MODEL_TAG,
    SWEEP_HASH_TAG,
    SWEEP_TAG,
    SWEEPER_TAG,
    SWEPT_KEYS_TAG,
    SWEPT_PARAM_PREFIX,
)
from mnist_tracking.runtime.redaction import redact, redact_text
from mnist_tracking.sweeps import dry_run, record, report
from mnist_tracking.sweeps.space import swept_values
from mnist_tracking.tracking import access, labels, store
from mnist_tracking.tracking.identity import source_tags, sweep_hash
from mnist_tracking.tracking.registry import promote_if_better, register_run_model
from mnist_tracking.tracking.resume import claim_sweep, owner_tags
from mnist_tracking.tracking.run import SigtermAsInterrupt

log = logging.getLogger(__name__)


# The sweeps this process has opened, for the command to close as an exception leaves it (see `_start`).
_open_sweeps: list[MlflowSweepCallback] = []


def close_open_sweeps(exc: BaseException) -> None:
    """Ends every sweep parent run this process opened that is still RUNNING, as `exc` ends the command."""
    for sweep in _open_sweeps:
        sweep.close_early(interrupted=isinstance(exc, KeyboardInterrupt))


class MlflowSweepCallback(Callback):
    """Opens a parent run when a multirun starts and writes the sweep report on it when the sweep ends.

    Jobs find the parent through their own config (`mlflow.parent_run_id`, and the tracking URI in
    `hydra.job.env_set`), which this callback adds to the sweep's overrides, so jobs in other
    processes or on other machines nest under it too. The store and experiment are created here, once, before any job.
    """

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.tracking_uri: str | None = None
        self._sigterm = SigtermAsInterrupt()  # for the sweep's lifetime

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._start(config)
        except ConfigError as exc:  # e.g. an unreachable tracking server: the message says it all
            log.error("%s", exc)
            raise SystemExit(2) from None
        except Exception:
            # Hydra would only warn and run the jobs with no parent: stop instead, and say why.
            log.exception("Could not open the sweep's parent run")
            raise SystemExit(1) from None

    def _start(self, config: DictConfig) -> None:
        if config.sweep.dry_run:  # what each job would do: no parent, nothing recorded
            return dry_run.start_sweep(config)
        check_sweep(config)
        launch_dir = Path(config.hydra.runtime.cwd)
        self.tracking_uri, experiment_id = store.open_experiment(
            config.mlflow.tracking_uri, config.mlflow.experiment_name, launch_dir
        )
        if config.sweep.register_best:  # a sweep that ends by registering its best model may do so: known now
            access.require_model_write(self.tracking_uri, config.sweep.registered_model_name)
        # MLflow resolves `models:/` URIs (registering the best job's model) against the process-wide URI: set here,
        # since a sweep whose every job is skipped trains nothing that would set it.
        mlflow.set_tracking_uri(self.tracking_uri)
        swept = redact(swept_values(config))
        tags = {
            **source_tags(launch_dir, sys.argv[1:], one_job=False),
            SWEEP_TAG: "true",
            SWEPT_KEYS_TAG: json.dumps(list(swept)),
            OPTIMIZED_METRIC_TAG: config.optimized_metric,
            OPTIMIZED_DIRECTION_TAG: config.optimized_direction,
            SWEEPER_TAG: config.hydra.sweeper._target_,
            LAUNCHER_TAG: config.hydra.launcher._target_,
        }
        client = mlflow.MlflowClient(self.tracking_uri)
        name = " ".join(["sweep", *(f"{k}={v}" for k, v in swept.items())])
        hashed = sweep_hash(config)
        stopped = config.sweep.resume and claim_sweep(self.tracking_uri, experiment_id, hashed)
        if stopped:
            self.parent_run_id = stopped.info.run_id
            log.info("Continuing sweep %s (attempt %s)", self.parent_run_id, stopped.data.tags[ATTEMPTS_TAG])
        else:
            tags |= {SWEEP_HASH_TAG: hashed, **owner_tags(), **labels.user_tags(config)}
            self.parent_run_id = client.create_run(experiment_id, run_name=name[:250], tags=tags).info.run_id
        # Whatever ends this process early (an exception, Ctrl-C, SIGTERM), the parent is closed: by the command as
        # the exception leaves it (`close_open_sweeps`), ahead of exit handlers that a launcher registers later
        # (Ray's shutdown), and by this exit handler where nothing else did.
        _open_sweeps.append(self)
        atexit.register(self._close_at_exit)
        self._sigterm.install()
        client.log_batch(
            self.parent_run_id,
            params=[mlflow.entities.Param(f"{SWEPT_PARAM_PREFIX}{k}", v[:6000]) for k, v in swept.items()],
        )
        dry_run.pass_to_jobs(config, self.parent_run_id, self.tracking_uri)
        log.info("Sweep parent run %s in %s", self.parent_run_id, redact_text(self.tracking_uri))

    @property
    def _parent_run_id(self) -> str:
        """The sweep's parent run: `on_multirun_start` opens it (or stops the sweep)."""
        assert self.parent_run_id is not None, "on_multirun_start has not opened the parent run"
        return self.parent_run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.sweep.dry_run:
            return dry_run.end_sweep(config)
        client = mlflow.MlflowClient(self.tracking_uri)
        parent_run_id = self._parent_run_id
        self._end_running_children(client, RunStatus.FAILED)  # a job whose worker died could not end its run
        sweep = report.build_report(client, parent_run_id)
        record.log_report(client, sweep)
        table, best = sweep.table, sweep.best
        failed = table[table["status"] != "FINISHED"]
        if best is not None and config.sweep.register_best:
            self._register_best(client, config, best["run_id"])
        status = RunStatus.FAILED if len(failed) else RunStatus.FINISHED
        self._close(status)
        self._sigterm.restore()
        log.info(
            "Sweep %s: %d jobs, %d failed; best run %s",
            parent_run_id,
            len(table),
            len(failed),
            None if best is None else best["run_id"],
        )
        if len(failed):
            log.error(
                "%d of %d sweep jobs failed (runs %s); the report on parent run %s covers the others.",
                len(failed),
                len(table),
                ", ".join(failed["run_id"]),
                parent_run_id,
            )
            # Hydra turns a callback's exceptions into warnings; the sweep's exit status must still say it failed.
            raise SystemExit(1)

    def _register_best(self, client: mlflow.MlflowClient, config: DictConfig, best_run_id: str) -> None:
        """Registers the best job's model and moves the champion alias to it if it scores better."""
        parent_run_id = self._parent_run_id
        version = register_run_model(client, best_run_id, config.sweep.registered_model_name)
        if version:
            client.set_tag(parent_run_id, REGISTERED_MODEL_TAG, f"{version.name}/{version.version}")
            minimize = config.optimized_direction == "minimize"
            promoted, reason = promote_if_better(client, version, config.optimized_metric, minimize)
            champion = client.get_model_version_by_alias(version.name, CHAMPION_ALIAS)
            tags = {
                PROMOTED_TAG: str(promoted).lower(),
                PROMOTION_REASON_TAG: reason,
                CHAMPION_TAG: f"{champion.name}/{champion.version}",
            }
            client.log_batch(parent_run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()])
            log.info("%s: %s", "Promoted" if promoted else "Not promoted", reason)

    def _end_running_children(self, client: mlflow.MlflowClient, status: int) -> None:
        parent_run_id = self._parent_run_id
        parent = client.get_run(parent_run_id)
        for run in client.search_runs(
            [parent.info.experiment_id],
            max_results=10_000,
            filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'",
        ):
            log.warning("Ending job run %s, still RUNNING, as %s", run.info.run_id, RunStatus.to_string(status))
            client.set_terminated(run.info.run_id, RunStatus.to_string(status))

    def close_early(self, interrupted: bool) -> None:
        """Ends the parent run, if still RUNNING, as KILLED (`interrupted`: Ctrl-C or SIGTERM as KeyboardInterrupt)
        or FAILED (any other early end)."""
        self._close(RunStatus.KILLED if interrupted else RunStatus.FAILED)

    def _close_at_exit(self) -> None:
        """KILLED after Ctrl-C or SIGTERM, FAILED after any other early end; nothing after a normal end."""
        last = getattr(sys, "last_type", None)  # set when an uncaught exception ended the program
        self._close(RunStatus.KILLED if last is not None and issubclass(last, KeyboardInterrupt) else RunStatus.FAILED)

    def _close(self, status: int) -> None:
        """Ends the parent run once; later calls (the atexit hook after a normal end) do nothing."""
        if self.parent_run_id is None:
            return
        try:
            client = mlflow.MlflowClient(self.tracking_uri)
            if client.get_run(self.parent_run_id).info.status == "RUNNING":
                # Parallel launchers kill their workers outright when a sweep is stopped: end those runs too.
                self._end_running_children(client, status)
                client.set_terminated(self.parent_run_id, RunStatus.to_string(status))
        except Exception:  # at exit, the store may be gone; say so rather than hide it
            log.exception("Could not close sweep parent run %s", self.parent_run_id)
