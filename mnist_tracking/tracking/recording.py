"""A job's Keras callbacks, from its config: those of the `callbacks` group (continued where a resumed run stopped),
the MLflow recorder, with the best epoch and the images per epoch, and a log line per epoch."""

from __future__ import annotations

import functools
from pathlib import Path

import keras
from omegaconf import DictConfig

from mnist_tracking.ml import callbacks as fit_callbacks
from mnist_tracking.ml.data import Dataset
from mnist_tracking.tracking import ending
from mnist_tracking.tracking.callback import MlflowCallback
from mnist_tracking.tracking.continuation import Resumed
from mnist_tracking.tracking.epoch_images import EpochImages


def monitored(cfg: DictConfig) -> str:
    """The per-epoch metric a run's best epoch is chosen by: `optimized_metric`, or for a test metric (measured once,
    at the end) its validation counterpart."""
    return str(cfg.optimized_metric).replace("test_", "val_", 1)


def job_callbacks(
    cfg: DictConfig, run_id: str, tracking_uri: str, output_dir: Path, data: Dataset, resumed: Resumed
) -> tuple[MlflowCallback, list[keras.callbacks.Callback]]:
    """The recorder, and every callback of the job's fit in order: the config's (which may add to an epoch's logs),
    then the recorder, which records those logs, then a log line per epoch."""
    configured = fit_callbacks.from_config(cfg.get("callbacks"))
    resumable = fit_callbacks.resumable(configured)
    for name, callback in resumable.items():
        prefix = f"{name}."
        callback.set_state(
            {k.removeprefix(prefix): v for k, v in resumed.callback_state.items() if k.startswith(prefix)}
        )
    every = cfg.mlflow.log_images_every
    recorder = MlflowCallback(
        run_id,
        tracking_uri,
        cfg.trainer.checkpoint_every,
        output_dir,
        resumed.history,
        monitor=monitored(cfg),
        mode="max" if cfg.optimized_direction == "maximize" else "min",
        resumable=resumable,
        images=EpochImages(data.x_val, data.y_val, every, cfg.trainer.eval_batch_size) if every else None,
        on_close=functools.partial(ending.arm, tracking_uri, run_id),  # from here, a silent server is given up on
    )
    return recorder, [*configured.values(), recorder, fit_callbacks.epoch_logger(cfg.trainer.epochs)]
