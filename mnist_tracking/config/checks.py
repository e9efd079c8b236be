"""Checks of a composed config that must pass before anything trains or is recorded: the schema's
(config/schema.py), then what a schema cannot say."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from omegaconf import DictConfig

from mnist_tracking.config import schema
from mnist_tracking.errors import ConfigError
from mnist_tracking.sweeps.space import swept_values
from mnist_tracking.tracking.labels import check_labels


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
    """Raises ConfigError for the first value that cannot work: the schema's types and rules (config/schema.py),
    then the keys of the groups that name a function (model, optimizer, callbacks) and the cross-field rules."""
    schema.check(cfg)
    check_labels(cfg)
    lr = cfg.optimizer.get("learning_rate")
    if not _is_number(lr) or lr <= 0:
        _fail("optimizer.learning_rate", lr, "use a number > 0, e.g. 0.01")
    if "momentum" in cfg.optimizer:
        momentum = cfg.optimizer.momentum
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            _fail("optimizer.momentum", momentum, "use a number from 0 to 1, e.g. 0.9 (0: plain SGD)")
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
        if str(entry.get("monitor", "")).startswith("test_"):
            _fail(
                f"callbacks.{name}.monitor",
                entry.monitor,
                "a callback watches a per-epoch metric (val_accuracy, val_loss, accuracy or loss); the test set is "
                f"measured once, after the fit: set callbacks.{name}.monitor=val_{entry.monitor.removeprefix('test_')}",
            )
    metric, direction = cfg.optimized_metric, cfg.optimized_direction
    if ("loss" in metric) != (direction == "minimize"):  # the best run would be the worst one
        _fail(
            "optimized_direction",
            direction,
            f"optimized_metric={metric} is {'a loss' if 'loss' in metric else 'an accuracy'}: use optimized_direction="
            f"{'minimize' if 'loss' in metric else 'maximize'}",
        )


def check_sweep(config: DictConfig) -> None:
    """Raises ConfigError for a multirun setting that cannot work (before the sweep's parent run opens)."""
    check_labels(config)  # the parent run takes its tags from the sweep's config
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
