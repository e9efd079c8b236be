"""A whole training epoch as one compiled call on JAX: Keras's own `train_step`, scanned over the epoch's batches.

Keras's JAX trainer calls its compiled step once per batch from Python, even with `steps_per_execution`; at batch
32 that call, not the arithmetic, is most of an epoch. Here one `jax.lax.scan` runs the same steps on the same
batches, in the same order, inside one compiled function.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from mnist_tracking.ml.pipeline import EpochBatches


def fuse_epochs(model: keras.Model, batches: EpochBatches) -> None:
    """Makes `model.fit(batches, ...)` run each epoch as one compiled call (JAX backend, after `compile` with
    `steps_per_execution=len(batches)`): the updates, metrics and logs of a step-by-step fit."""
    import jax

    if keras.backend.backend() != "jax" or model.steps_per_execution != len(batches):
        raise ValueError(
            f"fuse_epochs needs the JAX backend and steps_per_execution={len(batches)} (one call an "
            f"epoch); got {keras.backend.backend()} and {model.steps_per_execution}"
        )
    # On device once per fit; XLA on CPU uses a 64-byte-aligned array in place (see data.py), without a copy. Each
    # image as one row: XLA gathers whole rows faster than 2-D blocks.
    shape = batches.x.shape[1:]
    x, y = jax.device_put(batches.x.reshape(len(batches.x), -1)), jax.device_put(batches.y)
    size = batches.batch_size

    @functools.partial(jax.jit, donate_argnums=0)
    def epoch(state, order, x, y):
        # The full batches in a scan, then the last one (full or short) on its own: its logs are the epoch's.
        last = (len(order) - 1) // size * size

        def batch(idx):  # the examples at `idx`, images shaped as the model takes them
            return x[idx].reshape(-1, *shape), y[idx]

        def step(state, idx):
            _, state = model.train_step(state, batch(idx))
            return state, None

        state, _ = jax.lax.scan(step, state, order[:last].reshape(-1, size))
        return model.train_step(state, batch(order[last:]))

    def train_function(state, iterator):
        # Keras's iterator over `batches` is left unread: the compiled epoch gathers the same batches on device,
        # from the order that `batches` holds for this epoch (the one `batches[i]` would serve).
        return epoch(state, np.asarray(batches.order, np.int32), x, y)

    model.train_function = train_function  # fit keeps a train_function that is set (compile resets it)
