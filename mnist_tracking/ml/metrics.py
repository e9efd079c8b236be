"""A Keras metric that keeps an epoch's confusion counts: on the validation set, Keras's own validation pass fills
it, so a run draws the validation confusion matrix of every epoch without predicting the validation set again."""

from __future__ import annotations

from typing import Any

import keras

from mnist_tracking.names import CONFUSION_COUNTS


class ConfusionCounts(keras.metrics.Metric):
    """How many examples of each true class (rows) the model predicted as each class (columns), since the last
    reset (Keras resets metrics at every epoch and evaluation). Its result is the matrix, not a number: Keras's
    logs hold it as `confusion_counts` (training) and `val_confusion_counts` (validation)."""

    def __init__(self, num_classes: int, name: str = CONFUSION_COUNTS, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.counts = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="counts")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        true = keras.ops.one_hot(keras.ops.argmax(y_true, axis=-1), self.num_classes)
        predicted = keras.ops.one_hot(keras.ops.argmax(y_pred, axis=-1), self.num_classes)
        self.counts.assign_add(keras.ops.matmul(keras.ops.transpose(true), predicted))

    def result(self) -> Any:
        return self.counts.value

    def reset_state(self) -> None:
        self.counts.assign(keras.ops.zeros((self.num_classes, self.num_classes)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}
