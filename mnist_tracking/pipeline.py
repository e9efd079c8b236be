"""The training input: batches in an order fixed by the seed and the epoch, so that a resumed fit sees
exactly the batches an uninterrupted one would have seen."""

from __future__ import annotations

import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the `n` training examples in `epoch`: a permutation that depends on nothing else."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int):
    """A tf.data.Dataset of (x, y) batches for epochs `first_epoch` … `epochs`-1, each epoch shuffled by
    `epoch_order` and batched on its own (its last batch may be short), as Keras's own shuffle does."""
    import tensorflow as tf

    orders = np.array([epoch_order(seed, epoch, len(x)) for epoch in range(first_epoch, epochs)],
                      dtype=np.int64).reshape(-1, len(x))
    x, y = tf.constant(x), tf.constant(y)
    return (tf.data.Dataset.from_tensor_slices(orders)
            .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
            .map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
