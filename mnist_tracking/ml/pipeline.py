"""The training input: batches in an order fixed by the seed and the epoch, so that a resumed fit sees
exactly the batches an uninterrupted one would have seen."""

from __future__ import annotations

import keras  # imported only once the job has chosen its backend (see runtime/backend.py)
import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the `n` training examples in `epoch`: a permutation that depends on nothing else."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int):
    """The (x, y) batches of epochs `first_epoch` … `epochs`-1, each epoch shuffled by `epoch_order` and batched
    on its own (its last batch may be short), as Keras's own shuffle does: a tf.data pipeline on TensorFlow,
    NumPy batches on other backends (which then never import TensorFlow)."""
    if keras.backend.backend() != "tensorflow":
        return EpochBatches(x, y, batch_size, seed, first_epoch)
    import tensorflow as tf

    orders = np.array(
        [epoch_order(seed, epoch, len(x)) for epoch in range(first_epoch, epochs)], dtype=np.int64
    ).reshape(-1, len(x))
    x, y = tf.constant(x), tf.constant(y)
    return (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
        .map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


class EpochBatches(keras.utils.PyDataset):
    """One epoch's batches at a time, as NumPy arrays; the next epoch's order after each (`on_epoch_end`)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, first_epoch
        self.order = epoch_order(seed, first_epoch, len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[idx], self.y[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = epoch_order(self.seed, self.epoch, len(self.x))
