"""The images a run logs every few epochs, which MLflow's image grid steps through: a fixed sample of validation
digits with what the model predicts, and the validation confusion matrix."""

from __future__ import annotations

import keras
import mlflow
import numpy as np

from mnist_tracking.ml import images as drawn
from mnist_tracking.names import EPOCH_CONFUSION_KEY, EPOCH_SAMPLE_KEY


class EpochImages:
    """Every `every` epochs (and after the last), the two images of an epoch.

    On the training thread, only a copy of the epoch's weights is taken (`snapshot`: the next epoch changes them);
    a thread of the recording callback's loads them into a clone of the model, predicts with it in `batch_size`
    batches, and draws and logs the images (`log`).

    Args:
        x_val: The validation images, as the model takes them.
        y_val: Their one-hot labels.
        every: Epochs between two sets of images; 0 means none.
        batch_size: Images per prediction batch.
        sample: How many validation digits the sample shows (the same ones every epoch).
        images: The sample as it is drawn (raw pixels); default: `x_val`'s.
    """

    def __init__(
        self,
        x_val: np.ndarray,
        y_val: np.ndarray,
        every: int = 1,
        batch_size: int = 1024,
        sample: int = 25,
        images: np.ndarray | None = None,
    ) -> None:
        self.x_val, self.labels, self.every, self.batch_size = x_val, y_val.argmax(axis=1), every, batch_size
        self.num_classes = y_val.shape[1]
        self.sample = np.sort(np.random.default_rng(0).choice(len(x_val), min(sample, len(x_val)), replace=False))
        self.images = (x_val if images is None else images)[self.sample]
        self._copy: keras.Model | None = None

    def due(self, epoch: int, epochs: int | None) -> bool:
        """Whether `epoch` (0-based) of a fit of `epochs` gets images."""
        return self.every > 0 and ((epoch + 1) % self.every == 0 or epoch + 1 == epochs)

    def snapshot(self, model: keras.Model) -> list[np.ndarray]:
        """A copy of the model's weights now, for `log` to predict with."""
        if self._copy is None:  # a model of the same architecture, predicting on the image thread only
            self._copy = keras.models.clone_model(model)
        return model.get_weights()

    def predict(self, weights: list[np.ndarray]) -> np.ndarray:
        """The class the model predicts for each validation image with `weights`, leaving the model's own alone."""
        assert self._copy is not None, "snapshot has not run"
        self._copy.set_weights(weights)
        return self._copy.predict(self.x_val, batch_size=self.batch_size, verbose=0).argmax(axis=1)

    def log(self, client: mlflow.MlflowClient, run_id: str, epoch: int, weights: list[np.ndarray]) -> None:
        """Predicts with an epoch's `weights`, draws the two images and logs them to the run at step `epoch`."""
        predicted = self.predict(weights)
        title = f"Validation, epoch {epoch + 1}"
        sample = drawn.digit_grid(self.images, self.labels[self.sample], predicted[self.sample], title)
        matrix = drawn.confusion_matrix(self.labels, predicted, self.num_classes, title)
        for key, image in ((EPOCH_SAMPLE_KEY, sample), (EPOCH_CONFUSION_KEY, matrix)):
            client.log_image(run_id, image, key=key, step=epoch, synchronous=True)
