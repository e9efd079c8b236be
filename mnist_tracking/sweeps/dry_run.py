"""A dry run (`sweep.dry_run=true`): what each job of a multirun, or a single run, would do, with nothing recorded.

Each job says whether it would train a new run, skip (a FINISHED run with the same config stands for it) or resume
a stopped run from its checkpoint, deciding as a real job does (`find_finished_run`, `find_run_to_continue`) against
the store as it is. The sweep's side opens no parent: it finds the stopped sweep it would continue
(`find_stopped_sweep`) and passes its id to the jobs as a real sweep passes its parent's (`pass_to_jobs`); with
none, the jobs plan as the jobs of a new sweep. Jobs append their plans to the sweep folder, which the sweep sums
up at its end. No store, experiment, run, model version or Optuna storage is created or changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from mnist_tracking.config.checks import check_config, check_sweep
from mnist_tracking.names import ATTEMPTS_TAG, CHECKPOINT_EPOCH_TAG
from mnist_tracking.runtime.job import current_job
from mnist_tracking.runtime.redaction import install_log_filter
from mnist_tracking.tracking import resume, store
from mnist_tracking.tracking.identity import sweep_hash
from mnist_tracking.tracking.run import find_finished_run

log = logging.getLogger(__name__)

PLANS_FILE = "dry_run.jsonl"  # in the sweep folder: one line per job's plan
ACTIONS = ("train", "skip", "resume")


@dataclass(frozen=True)
class Plan:
    """What a job would do: train a new run, skip (run `run_id` stands for it), or resume run `run_id` at `epoch`."""

    job: str
    action: str
    run_id: str | None = None
    epoch: int | None = None  # 0-based, as the run's `resumed_from_epoch` tag would say

    def __str__(self) -> str:
        said = {
            "train": "would train a new run",
            "skip": f"would skip: FINISHED run {self.run_id} has the same config",
            "resume": f"would resume run {self.run_id} from epoch {self.epoch}",
        }
        return f"Dry run: {self.job}: {said[self.action]}"


def quoted(value: str) -> str:
    """A Hydra override value that survives any characters (commas, spaces, quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pass_to_jobs(config: DictConfig, parent_run_id: str | None, tracking_uri: str) -> None:
    """Gives a multirun's jobs their sweep parent (if any) and, where the config leaves it to the environment, the
    tracking URI: through their own config, which launchers ship to other processes and machines."""
    with read_write(config.hydra.overrides), open_dict(config.hydra.overrides):
        if parent_run_id:
            config.hydra.overrides.hydra.append(f"mlflow.parent_run_id={parent_run_id}")
        if not config.mlflow.tracking_uri:  # the resolved default or $MLFLOW_TRACKING_URI of this shell
            config.hydra.overrides.hydra.append(f"++hydra.job.env_set.MLFLOW_TRACKING_URI={quoted(tracking_uri)}")


def _plans_file(sweep_dir: str, launch_dir: str) -> Path:
    return Path(launch_dir) / sweep_dir / PLANS_FILE


def start_sweep(config: DictConfig) -> None:
    """A dry run's sweep start: checks the sweep, finds the stopped sweep it would continue and passes its id to
    the jobs; creates nothing."""
    check_sweep(config)
    tracking_uri = store.resolve_tracking_uri(config.mlflow.tracking_uri, Path(config.hydra.runtime.cwd))
    stopped = None
    if config.sweep.resume and store.store_exists(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(config.mlflow.experiment_name)
        if experiment is not None:
            stopped = resume.find_stopped_sweep(client, experiment.experiment_id, sweep_hash(config))
    if stopped is None:
        log.info("Dry run: would start a new sweep")
    else:
        attempt = int(stopped.data.tags.get(ATTEMPTS_TAG, "1")) + 1
        log.info("Dry run: would continue sweep %s (attempt %d)", stopped.info.run_id, attempt)
    pass_to_jobs(config, stopped.info.run_id if stopped else None, tracking_uri)
    _plans_file(config.hydra.sweep.dir, config.hydra.runtime.cwd).unlink(missing_ok=True)  # an earlier dry run's


def end_sweep(config: DictConfig) -> None:
    """A dry run's sweep end: one line counting the jobs' plans (no report, nothing recorded)."""
    path = _plans_file(config.hydra.sweep.dir, config.hydra.runtime.cwd)
    plans = [json.loads(line)["action"] for line in path.read_text().splitlines()] if path.is_file() else []
    _summarize(plans)


def _summarize(actions: list[str]) -> None:
    """Logs the line that closes a dry run: how many jobs would train, skip and resume."""
    counts = Counter(actions)
    log.info(
        "Dry run: %d job%s: %s; nothing was recorded",
        len(actions),
        "" if len(actions) == 1 else "s",
        ", ".join(f"{counts[action]} would {action}" for action in ACTIONS),
    )


def plan_job(cfg: DictConfig) -> float:
    """A dry run's job: checks `cfg` as a real job does, logs what the job would do and adds it to the sweep's
    plans; returns nan, as a job that records nothing."""
    install_log_filter()
    check_config(cfg)
    plan = find_plan(cfg)
    log.info("%s", plan)
    hydra = HydraConfig.get()
    if hydra.mode == RunMode.MULTIRUN:
        path = _plans_file(hydra.sweep.dir, hydra.runtime.cwd)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:  # one write of one line: parallel jobs' lines never interleave
            os.write(descriptor, (json.dumps(asdict(plan)) + "\n").encode())
        finally:
            os.close(descriptor)
    else:
        _summarize([plan.action])
    return math.nan


def find_plan(cfg: DictConfig) -> Plan:
    """What the job of `cfg` would do, decided as `train` decides, against the store as it is."""
    job = current_job()
    tracking_uri = store.resolve_tracking_uri(cfg.mlflow.tracking_uri, job.launch_dir)
    client = mlflow.MlflowClient(tracking_uri) if store.store_exists(tracking_uri) else None
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment_name) if client else None
    if client is None and cfg.trainer.resume not in (False, "auto"):
        raise resume.unknown_run(str(cfg.trainer.resume))
    if client is None or experiment is None:  # nothing recorded: nothing to skip or continue
        return Plan(job.name, "train")
    parent = cfg.mlflow.get("parent_run_id")
    # In a dry multirun, a parent is the stopped sweep that would be continued; no parent: a new sweep's.
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    done = find_finished_run(
        tracking_uri, experiment.experiment_id, cfg, continued=True if in_sweep and parent else None
    )
    if done is not None:
        return Plan(job.name, "skip", done.info.run_id)
    stopped = resume.find_run_to_continue(client, experiment.experiment_id, cfg, new_sweep=in_sweep and not parent)
    if stopped is None:
        return Plan(job.name, "train")
    # The epoch after the checkpoint's, where `continuation.continue_run` starts.
    return Plan(job.name, "resume", stopped.info.run_id, int(stopped.data.tags[CHECKPOINT_EPOCH_TAG]) + 1)


class _BatchLaunched(Exception):
    """Ends a dry run's search once its first batch is launched."""


@contextlib.contextmanager
def first_batch_only(launcher: Any) -> Iterator[None]:
    """While open, a sweeper's `launcher` launches one batch of jobs, then ends the sweep: an Optuna search picks
    its later trials from the first ones' results, which a dry run does not have (its jobs return nan)."""
    launch = launcher.launch

    def once(*args: Any, **kwargs: Any) -> Any:
        launch(*args, **kwargs)
        raise _BatchLaunched

    launcher.launch = once
    try:
        yield
    except _BatchLaunched:
        pass
    finally:
        launcher.launch = launch
