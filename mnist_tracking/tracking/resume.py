"""Continuing a stopped run or sweep: which one a job continues, and claiming it (continuation.py then loads it)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from mnist_tracking.errors import ConfigError
from mnist_tracking.names import (
    ATTEMPTS_TAG,
    CHECKPOINT_EPOCH_TAG,
    CHECKPOINT_UNUSABLE_TAG,
    CONFIG_HASH_TAG,
    DIVERGED_TAG,
    FAILURE_REASON_TAG,
    OWNER_TAG,
    PARENT_RUN_TAG,
    SLURM_JOB_TAG,
    SUPERSEDED_TAG,
    SWEEP_HASH_TAG,
)
from mnist_tracking.tracking.identity import config_hash
from mnist_tracking.tracking.store import store_lock

log = logging.getLogger(__name__)


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), which tells it from a later process with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _slurm_job() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}:{os.environ.get('SLURM_RESTART_COUNT', '0')}" if job else None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the one training a run."""
    tags = {OWNER_TAG: f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"}
    slurm_job = _slurm_job()
    if slurm_job:
        tags[SLURM_JOB_TAG] = slurm_job
    return tags


def owner_is_gone(tags: dict[str, str]) -> bool:
    """Whether the process that trained a RUNNING run has provably ended: on this machine, no process with its
    pid and start time; under Slurm, this is a later start (requeue) of the same job."""
    owner, slurm, here = tags.get(OWNER_TAG), tags.get(SLURM_JOB_TAG), _slurm_job()
    if (
        slurm
        and here
        and slurm.split(":")[0] == here.split(":")[0]
        and int(here.split(":")[1]) > int(slurm.split(":")[1])
    ):
        return True  # Slurm runs one start of a job at a time: a requeued start means the earlier one is over
    if not owner:
        return False
    host, pid, start = owner.rsplit(":", 2)
    if start == "None":  # recorded where /proc could not tell a process's start: never provably gone
        return False
    return host == socket.gethostname() and _process_start(int(pid)) != start


def is_stopped(run: mlflow.entities.Run) -> bool:
    """Whether a run is over without having finished: KILLED, FAILED, or RUNNING with its process gone."""
    return run.info.status in ("KILLED", "FAILED") or (run.info.status == "RUNNING" and owner_is_gone(run.data.tags))


def resumable(run: mlflow.entities.Run) -> bool:
    """Whether a job's run can be continued: stopped, with a usable checkpoint, not diverged, and not
    superseded by a newer run of the same job."""
    tags = run.data.tags
    return (
        CHECKPOINT_EPOCH_TAG in tags
        and not {DIVERGED_TAG, CHECKPOINT_UNUSABLE_TAG, SUPERSEDED_TAG} & tags.keys()
        and is_stopped(run)
    )


def find_run_to_continue(
    client: mlflow.MlflowClient, experiment_id: str, cfg: DictConfig, new_sweep: bool = False
) -> mlflow.entities.Run | None:
    """The run this job would continue, found without claiming it (what `claim_run` claims); None: a new run.

    `trainer.resume`: auto takes the latest stopped run of the same config (and the same sweep parent,
    or none) that has a checkpoint; a run id takes that run; false takes none. `new_sweep`: the job's
    sweep parent is yet to be created (a dry run), so auto finds no run of it.
    """
    wanted = cfg.trainer.resume
    if wanted is False:
        return None
    if wanted != "auto":
        return _named_run(client, str(wanted), cfg)
    if new_sweep:
        return None
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{CONFIG_HASH_TAG} = '{config_hash(cfg)}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    parent = cfg.mlflow.get("parent_run_id")
    return next((r for r in found if r.data.tags.get(PARENT_RUN_TAG) == parent and resumable(r)), None)


def claim_run(tracking_uri: str, experiment_id: str, cfg: DictConfig) -> mlflow.entities.Run | None:
    """The run this job continues (`find_run_to_continue`), claimed for this process; None: train a new run.

    Under the store's lock, so that two identical jobs never take the same run.
    """
    client = mlflow.MlflowClient(tracking_uri)
    with store_lock(tracking_uri):
        run = find_run_to_continue(client, experiment_id, cfg)
        return run and _take(client, run)


def find_stopped_sweep(client: mlflow.MlflowClient, experiment_id: str, sweep_hash: str) -> mlflow.entities.Run | None:
    """The latest stopped parent (KILLED, FAILED, or RUNNING with its process gone) of the same sweep; None: none."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{SWEEP_HASH_TAG} = '{sweep_hash}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    return next((r for r in found if is_stopped(r)), None)


def claim_sweep(tracking_uri: str, experiment_id: str, sweep_hash: str) -> mlflow.entities.Run | None:
    """The stopped sweep (`find_stopped_sweep`) this sweep continues, claimed for this process; None: a new one."""
    client = mlflow.MlflowClient(tracking_uri)
    with store_lock(tracking_uri):
        run = find_stopped_sweep(client, experiment_id, sweep_hash)
        return run and _take(client, run)


def _take(client: mlflow.MlflowClient, run: mlflow.entities.Run) -> mlflow.entities.Run:
    """Marks a stopped run RUNNING again, owned by this process, one attempt more (call under the store lock)."""
    attempts = int(run.data.tags.get(ATTEMPTS_TAG, "1")) + 1
    client.update_run(run.info.run_id, status="RUNNING")
    for key, value in {**owner_tags(), ATTEMPTS_TAG: str(attempts)}.items():
        client.set_tag(run.info.run_id, key, value)
    return client.get_run(run.info.run_id)


def _named_run(client: mlflow.MlflowClient, run_id: str, cfg: DictConfig) -> mlflow.entities.Run:
    """The run `trainer.resume=<run id>` names, when it can be continued with this config; else ConfigError."""
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise unknown_run(run_id) from None
    if run.info.status == "FINISHED" or (run.info.status == "RUNNING" and not owner_is_gone(run.data.tags)):
        raise ConfigError(
            f"trainer.resume={run_id!r} is invalid: the run is {run.info.status}"
            f"{' and still training' if run.info.status == 'RUNNING' else ''}; only a stopped run continues."
        )
    if CHECKPOINT_EPOCH_TAG not in run.data.tags or CHECKPOINT_UNUSABLE_TAG in run.data.tags:
        raise ConfigError(f"trainer.resume={run_id!r} is invalid: the run has no usable checkpoint to continue from.")
    if DIVERGED_TAG in run.data.tags:
        raise ConfigError(
            f"trainer.resume={run_id!r} is invalid: the run diverged "
            f"({run.data.tags.get(FAILURE_REASON_TAG)}); continuing it would diverge again."
        )
    if run.data.tags.get(CONFIG_HASH_TAG) != config_hash(cfg):
        raise ConfigError(
            f"trainer.resume={run_id!r} is invalid: its config differs from this one (config_hash "
            f"{run.data.tags.get(CONFIG_HASH_TAG)} vs {config_hash(cfg)}); rerun it with its own command "
            "(its `command` tag) and trainer.resume=" + run_id + "."
        )
    return run


def unknown_run(run_id: str) -> ConfigError:
    """The error for `trainer.resume=<run id>` where the store has no such run."""
    return ConfigError(
        f"trainer.resume={run_id!r} is invalid: no such run; use auto, false or the id of a "
        "stopped run with a checkpoint."
    )


def supersede(tracking_uri: str, experiment_id: str, cfg: DictConfig, run_id: str) -> None:
    """Tags the stopped runs of this job in its sweep as superseded by `run_id`, a new run of the same job
    (they could not be continued): the sweep's report shows the new run instead of them."""
    parent = cfg.mlflow.get("parent_run_id")
    if not parent:
        return
    client = mlflow.MlflowClient(tracking_uri)
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.{CONFIG_HASH_TAG} = '{config_hash(cfg)}' and "
        f"tags.`{PARENT_RUN_TAG}` = '{parent}' and attributes.status != 'FINISHED'",
    ):
        if run.info.run_id != run_id and is_stopped(run) and SUPERSEDED_TAG not in run.data.tags:  # never a live one
            client.set_tag(run.info.run_id, SUPERSEDED_TAG, run_id)
