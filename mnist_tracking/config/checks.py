"""Checks of a composed config that must pass before anything trains or is recorded."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from omegaconf import DictConfig

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml.data import NORMALIZATIONS
from mnist_tracking.names import DIRECTIONS, OPTIMIZABLE_METRICS
from mnist_tracking.runtime.backend import BACKENDS
from mnist_tracking.sweeps.space import swept_values


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite real number: nan and inf are never valid settings here."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _fail(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {valid}.")


def _check_units(key: str, value: Any) -> None:
    units = [value] if _is_int(value) else value
    if isinstance(units, str) or not isinstance(units, Sequence) or not all(_is_int(u) and u >= 1 for u in units):
        _fail(
            key, value, "use a whole number >= 1 (e.g. 64) or a list of them (e.g. [128,64]); [] means no hidden layer"
        )


def check_config(cfg: DictConfig) -> None:
    """Raises ConfigError for the first value that cannot work."""
    backend = cfg.get("backend")
    if backend not in BACKENDS:
        _fail("backend", backend, f"use one of {', '.join(BACKENDS)}")
    seed = cfg.get("seed")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        _fail("seed", seed, "use a whole number from 0 to 2**32 - 1, e.g. 42")
    lr = cfg.optimizer.get("learning_rate")
    if not _is_number(lr) or lr <= 0:
        _fail("optimizer.learning_rate", lr, "use a number > 0, e.g. 0.01")
    if "momentum" in cfg.optimizer:
        momentum = cfg.optimizer.momentum
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            _fail("optimizer.momentum", momentum, "use a number from 0 to 1, e.g. 0.9 (0: plain SGD)")
    batch_size = cfg.data.batch_size
    if not _is_int(batch_size) or batch_size < 1:
        _fail("data.batch_size", batch_size, "use a whole number >= 1, e.g. 32")
    split = cfg.data.validation_split
    if not _is_number(split) or not 0 < split < 1:
        _fail("data.validation_split", split, "use a fraction strictly between 0 and 1, e.g. 0.25")
    if cfg.data.get("normalization") not in NORMALIZATIONS:
        _fail("data.normalization", cfg.data.get("normalization"), f"use one of {', '.join(NORMALIZATIONS)}")
    if "test_split" in cfg.data and not (_is_number(cfg.data.test_split) and 0 < cfg.data.test_split < 1):
        _fail("data.test_split", cfg.data.test_split, "use a fraction strictly between 0 and 1, e.g. 0.2")
    for key in ("limit_train", "limit_test"):
        limit = cfg.data.get(key)
        if limit is not None and (not _is_int(limit) or limit < 1):
            _fail(f"data.{key}", limit, "use null (all images) or a whole number >= 1")
    epochs = cfg.trainer.epochs
    if not _is_int(epochs) or epochs < 1:
        _fail("trainer.epochs", epochs, "use a whole number >= 1, e.g. 30")
    every = cfg.trainer.checkpoint_every
    if not _is_int(every) or every < 0:
        _fail("trainer.checkpoint_every", every, "use a whole number of epochs >= 0 (0: no checkpoints), e.g. 1")
    resume = cfg.trainer.resume
    if (
        resume is not False
        and resume != "auto"
        and not (isinstance(resume, str) and re.fullmatch(r"[0-9a-f]{32}", resume))
    ):
        _fail("trainer.resume", resume, "use auto, false, or the 32-character id of a stopped run")
    eval_batch_size = cfg.trainer.eval_batch_size
    if not _is_int(eval_batch_size) or eval_batch_size < 1:
        _fail("trainer.eval_batch_size", eval_batch_size, "use a whole number >= 1, e.g. 1024")
    if not isinstance(cfg.mlflow.log_system_metrics, bool):
        _fail("mlflow.log_system_metrics", cfg.mlflow.log_system_metrics, "use true or false")
    interval = cfg.mlflow.system_metrics_interval
    if not _is_number(interval) or interval <= 0:
        _fail("mlflow.system_metrics_interval", interval, "use a number of seconds > 0, e.g. 2")
    if "hidden_units" in cfg.model:
        _check_units("model.hidden_units", cfg.model.hidden_units)
    if "filters" in cfg.model:
        filters = cfg.model.filters
        if (
            isinstance(filters, str)
            or not isinstance(filters, Sequence)
            or not filters
            or not all(_is_int(f) and f >= 1 for f in filters)
        ):
            _fail("model.filters", filters, "use a non-empty list of whole numbers >= 1, e.g. [32,64]")
    if "dropout" in cfg.model:
        dropout = cfg.model.dropout
        if not _is_number(dropout) or not 0 <= dropout < 1:
            _fail("model.dropout", dropout, "use a fraction in [0, 1), e.g. 0.5")
    for name, entry in (cfg.get("callbacks") or {}).items():
        if not (isinstance(entry, Mapping) and isinstance(entry.get("_target_"), str)):
            _fail(
                f"callbacks.{name}",
                entry,
                "give a Keras callback as a mapping with its class in _target_, e.g. "
                "{_target_: keras.callbacks.EarlyStopping, patience: 3}",
            )
    metric = cfg.get("optimized_metric")
    if metric not in OPTIMIZABLE_METRICS:
        _fail("optimized_metric", metric, f"use one of {', '.join(OPTIMIZABLE_METRICS)}")
    direction = cfg.get("optimized_direction")
    if direction not in DIRECTIONS:
        _fail("optimized_direction", direction, f"use one of {', '.join(DIRECTIONS)}")
    if ("loss" in metric) != (direction == "minimize"):  # the best run would be the worst one
        _fail(
            "optimized_direction",
            direction,
            f"optimized_metric={metric} is {'a loss' if 'loss' in metric else 'an accuracy'}: use optimized_direction="
            f"{'minimize' if 'loss' in metric else 'maximize'}",
        )


def check_sweep(config: DictConfig) -> None:
    """Raises ConfigError for a multirun setting that cannot work (before the sweep's parent run opens)."""
    if "backend" in swept_values(config):
        _fail(
            "backend",
            swept_values(config)["backend"],
            "a multirun cannot sweep it: its jobs may share a process, and Keras cannot switch backends in a "
            "process. Run one sweep per backend (e.g. backend=jax -m model=dense,mlp64)",
        )
    storage = config.hydra.sweeper.get("storage")
    if storage is not None:
        _fail(
            "hydra.sweeper.storage",
            storage,
            "leave it null: optuna 2.10 (what hydra-optuna-sweeper 1.3 allows) "
            "cannot create a study in an RDB storage with SQLAlchemy 2, which MLflow needs; a stopped search "
            "continues from its MLflow runs instead (sweep.resume)",
        )
