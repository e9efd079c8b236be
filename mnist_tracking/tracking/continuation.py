"""Continuing a claimed stopped run: its checkpoint loaded into the model, the per-epoch metrics it has, and the
state of the callbacks saved with the checkpoint."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np

from mnist_tracking.names import (
    ATTEMPT_FROM_EPOCH_TAG,
    ATTEMPTS_TAG,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_COPY_TAG,
    CHECKPOINT_EPOCH_TAG,
    CHECKPOINT_UNUSABLE_TAG,
    NOT_EPOCH_METRICS,
    RESUMED_FROM_EPOCH_TAG,
)

log = logging.getLogger(__name__)


def restore(
    client: mlflow.MlflowClient, run: mlflow.entities.Run, model, download_dir: Path
) -> tuple[int, dict[str, np.ndarray]]:
    """Loads the run's checkpoint into `model`, from the local copy when this machine has it; returns its epoch and
    the callbacks' state saved with it."""
    from mnist_tracking.ml.checkpoint import restore_checkpoint  # Keras: not for the sweep's own process

    host, _, local = run.data.tags.get(CHECKPOINT_COPY_TAG, "::").partition(":")
    epoch = int(run.data.tags[CHECKPOINT_EPOCH_TAG])
    if host == socket.gethostname() and Path(local).is_file():
        try:
            restored = restore_checkpoint(model, Path(local))
            if restored[0] == epoch:
                return restored
        except (OSError, ValueError) as exc:  # a damaged copy: the run's own is the reference
            log.warning("Local checkpoint %s unusable (%s); using the run's", local, exc)
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        return restore_checkpoint(
            model, Path(client.download_artifacts(run.info.run_id, CHECKPOINT_ARTIFACT, str(download_dir)))
        )
    except Exception:  # the next attempt must not pick this checkpoint again: it trains a new run instead
        client.set_tag(run.info.run_id, CHECKPOINT_UNUSABLE_TAG, "true")
        raise


def recorded_history(client: mlflow.MlflowClient, run_id: str) -> dict[str, list[float]]:
    """The per-epoch metrics a run already has, in epoch order: every metric it has but the test set's, the
    system's and the optimizer's steps (so that a metric a callback or the model adds survives a resume)."""
    names = [name for name in client.get_run(run_id).data.metrics if not name.startswith(NOT_EPOCH_METRICS)]
    return {
        name: [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)] for name in names
    }


@dataclass
class Resumed:
    """Where a job's fit starts: the first epoch to train, the per-epoch metrics the run has, and the state of the
    callbacks saved with its checkpoint; a new run starts from nothing."""

    first_epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    callback_state: dict[str, np.ndarray] = field(default_factory=dict)


def continue_run(client: mlflow.MlflowClient, run: mlflow.entities.Run | None, model, output_dir: Path) -> Resumed:
    """Loads a claimed stopped run's checkpoint into `model` (downloaded, where this machine has no copy, into the
    job's `output_dir`/resumed) and notes the attempt on the (active) run; no run: a new one, from nothing."""
    if run is None:
        return Resumed()
    epoch, state = restore(client, run, model, output_dir / "resumed")
    first_epoch = epoch + 1
    attempt = run.data.tags[ATTEMPTS_TAG]
    mlflow.set_tags({RESUMED_FROM_EPOCH_TAG: first_epoch, ATTEMPT_FROM_EPOCH_TAG.format(attempt): first_epoch})
    log.info("Resuming run %s from epoch %d", run.info.run_id, first_epoch)
    return Resumed(first_epoch, recorded_history(client, run.info.run_id), state)
