"""A fit's checkpoint: every variable an exact continuation needs, and the epoch it was taken after.

The model's variables include Keras's seed-generator states (dropout); the optimizer's hold its
step count and slots (momentum); callbacks with state (early stopping's patience and best weights)
add theirs as named arrays. The order of the training batches needs no state: it is a
function of the seed and the epoch (see pipeline.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

EXTRA = "extra."  # + name: an array a checkpoint keeps beside the model's and optimizer's


def save_checkpoint(model: keras.Model, epoch: int, path: Path, extra: Mapping[str, np.ndarray] | None = None) -> None:
    """Writes the state after `epoch` (0-based) to `path`, whole or not at all, with the `extra` named arrays."""
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays |= {EXTRA + name: value for name, value in (extra or {}).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        np.savez(f, epoch=np.int64(epoch), **arrays)
    os.replace(partial, path)


def load_checkpoint(model: keras.Model, path: Path) -> int:
    """Restores a compiled `model` (optimizer included) from `path`; returns the epoch it was taken after."""
    return restore_checkpoint(model, path)[0]


def restore_checkpoint(model: keras.Model, path: Path) -> tuple[int, dict[str, np.ndarray]]:
    """Restores a compiled `model` (optimizer included) from `path`; returns the epoch it was taken after and the
    extra arrays saved with it."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            stored = sum(name.startswith(f"{prefix}_") for name in saved.files)
            if stored != len(variables):
                raise ValueError(f"{path} holds {stored} {prefix} variables, this model has {len(variables)}")
            for i, variable in enumerate(variables):
                variable.assign(saved[f"{prefix}_{i}"])
        extra = {name.removeprefix(EXTRA): saved[name] for name in saved.files if name.startswith(EXTRA)}
        return int(saved["epoch"]), extra
