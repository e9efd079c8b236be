"""Compiling and fitting a model on a `Dataset`: the study's loss and metric, batches in an order that depends only
on (seed, epoch), and, with `trainer.fast`, one compiled call per epoch."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Protocol

import keras

from mnist_tracking.errors import DivergedError
from mnist_tracking.ml.callbacks import KeepInterrupts
from mnist_tracking.ml.data import Dataset
from mnist_tracking.ml.fused import fuse_epochs
from mnist_tracking.ml.metrics import ConfusionCounts
from mnist_tracking.ml.pipeline import training_batches


def compile_model(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, data: Dataset, fast: bool, confusion: bool = False
) -> None:
    """Categorical cross-entropy and accuracy; `fast`: a whole epoch per call (TensorFlow runs that many steps in
    one call by itself; on JAX `fit` fuses them); `confusion`: also each epoch's confusion counts (ConfusionCounts),
    for the images of an epoch."""
    extra = [ConfusionCounts(data.num_classes)] if confusion else []
    _compile(model, optimizer, steps_per_epoch(data) if fast else 1, extra)


def without_confusion_counts(model: keras.Model) -> None:
    """Compiles `model` again as `compile_model` does without `confusion` (same optimizer and state), so that the
    saved model needs nothing of this package to load: ConfusionCounts is only for the images of an epoch."""
    _compile(model, model.optimizer, model.steps_per_execution, [])


def _compile(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, steps: int, extra: list[keras.metrics.Metric]
) -> None:
    model.compile(
        optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy", *extra], steps_per_execution=steps
    )


def steps_per_epoch(data: Dataset) -> int:
    return math.ceil(len(data.x_train) / data.batch_size)


class Trainer(Protocol):
    """What `fit` reads of the `trainer` config (conf/trainer/default.yaml)."""

    epochs: int
    fast: bool
    eval_batch_size: int


def fit(
    model: keras.Model,
    data: Dataset,
    trainer: Trainer,
    seed: int,
    first_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Trains `model` from `first_epoch` to `trainer.epochs` on `data`'s training set, validating on its validation
    set; with `trainer.fast`, one compiled call per epoch (validation in `trainer.eval_batch_size` batches).

    A non-finite loss stops the fit (TerminateOnNaN); a Ctrl-C or SIGTERM that Keras swallowed is raised again.
    """
    batches = training_batches(data.x_train, data.y_train, data.batch_size, seed, first_epoch, trainer.epochs)
    if trainer.fast and keras.backend.backend() == "jax":
        fuse_epochs(model, batches)
    with KeepInterrupts() as interrupts:
        model.fit(
            batches,
            steps_per_epoch=steps_per_epoch(data),
            initial_epoch=first_epoch,
            epochs=trainer.epochs,
            shuffle=False,
            validation_data=(data.x_val, data.y_val),
            validation_batch_size=trainer.eval_batch_size if trainer.fast else None,
            callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks, interrupts],
            verbose=1 if sys.stdout.isatty() else 0,
        )  # Keras's bar on a terminal; the log line always


def raise_if_diverged(history: dict[str, list[float]]) -> None:
    """DivergedError when the last epoch's loss is not finite (TerminateOnNaN stopped the fit there)."""
    losses = history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise DivergedError(f"loss became {losses[-1]} at epoch {len(losses)}")
