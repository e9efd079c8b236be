"""The images a run logs every few epochs, which MLflow's image grid steps through: a fixed sample of validation
digits with what the model predicts, and the validation confusion matrix."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

import keras
import mlflow
import numpy as np

from mnist_tracking.ml import images as drawn
from mnist_tracking.names import CONFUSION_COUNTS, EPOCH_CONFUSION_KEY, EPOCH_SAMPLE_KEY

log = logging.getLogger(__name__)


def yield_to_training() -> None:
    """Runs this thread at the lowest priority (Linux: a thread's own nice value), so that its work takes the cores
    training leaves idle rather than slowing training down."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the images still come, at normal priority
        log.warning("Could not lower the image thread's priority (%s): images may slow training", exc)


class EpochImages:
    """Every `every` epochs (and after the last), the two images of an epoch.

    On the training thread, `capture` takes what changes with the next epoch: the sample's predictions (one small
    batch) and the epoch's validation confusion counts, which Keras's own validation pass counted when the model is
    compiled with `ConfusionCounts` (mnist_tracking.ml.metrics; otherwise the validation set is predicted again,
    here). A thread of the recording callback's draws and logs the images (`log`).

    Args:
        x_val: The validation images, as the model takes them.
        y_val: Their one-hot labels.
        every: Epochs between two sets of images; 0 means none.
        batch_size: Images per prediction batch, where the validation set must be predicted again.
        sample: How many validation digits the sample shows (the same ones every epoch).
    """

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, every: int = 1, batch_size: int = 1024, sample: int = 25):
        self.x_val, self.labels, self.every, self.batch_size = x_val, y_val.argmax(axis=1), every, batch_size
        self.num_classes = y_val.shape[1]
        self.sample = np.sort(np.random.default_rng(0).choice(len(x_val), min(sample, len(x_val)), replace=False))

    def due(self, epoch: int, epochs: int | None) -> bool:
        """Whether `epoch` (0-based) of a fit of `epochs` gets images."""
        return self.every > 0 and ((epoch + 1) % self.every == 0 or epoch + 1 == epochs)

    def capture(self, model: keras.Model, logs: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray]:
        """The classes the model predicts for the sample now, and the epoch's validation confusion counts."""
        predicted = keras.ops.convert_to_numpy(model.predict_on_batch(self.x_val[self.sample])).argmax(axis=1)
        counts = logs.get(f"val_{CONFUSION_COUNTS}")
        if counts is None:  # a model compiled without ConfusionCounts: predict the validation set again
            guesses = model.predict(self.x_val, batch_size=self.batch_size, verbose=0).argmax(axis=1)
            counts = np.bincount(self.labels * self.num_classes + guesses, minlength=self.num_classes**2)
        return predicted, np.asarray(counts).reshape(self.num_classes, self.num_classes).round().astype(int)

    def log(
        self, client: mlflow.MlflowClient, run_id: str, epoch: int, predicted: np.ndarray, counts: np.ndarray
    ) -> None:
        """Draws an epoch's two images and logs them to the run at step `epoch`."""
        title = f"Validation, epoch {epoch + 1}"
        sample = drawn.digit_grid(self.x_val[self.sample], self.labels[self.sample], predicted, title)
        matrix = drawn.confusion_matrix(counts, title)
        for key, image in ((EPOCH_SAMPLE_KEY, sample), (EPOCH_CONFUSION_KEY, matrix)):
            client.log_image(run_id, image, key=key, step=epoch, synchronous=True)
