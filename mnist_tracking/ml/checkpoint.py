"""A fit's checkpoint: every variable an exact continuation needs, and the epoch it was taken after.

The model's variables include Keras's seed-generator states (dropout); the optimizer's hold its
step count and slots (momentum). The order of the training batches needs no state: it is a
function of the seed and the epoch (see pipeline.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


def save_checkpoint(model: keras.Model, epoch: int, path: Path) -> None:
    """Writes the state after `epoch` (0-based) to `path`, whole or not at all."""
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        np.savez(f, epoch=np.int64(epoch), **arrays)
    os.replace(partial, path)


def load_checkpoint(model: keras.Model, path: Path) -> int:
    """Restores a compiled `model` (optimizer included) from `path`; returns the epoch it was taken after."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            stored = sum(name.startswith(f"{prefix}_") for name in saved.files)
            if stored != len(variables):
                raise ValueError(f"{path} holds {stored} {prefix} variables, this model has {len(variables)}")
            for i, variable in enumerate(variables):
                variable.assign(saved[f"{prefix}_{i}"])
        return int(saved["epoch"])
