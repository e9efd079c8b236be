"""The end of a run: the trained model evaluated on the test set, and that evaluation recorded with the model."""

from __future__ import annotations

import functools
from importlib.metadata import version

import keras
import mlflow
from mlflow.models import infer_signature

from mnist_tracking import figures
from mnist_tracking.data import MnistData
from mnist_tracking.names import OPTIMIZER_STEPS_METRIC


@functools.cache
def model_requirements() -> list[str]:
    """What the logged model needs, given to MLflow so it does not infer it in a subprocess (~12 s a model here)."""
    return [f"{name}=={version(name)}" for name in ("tensorflow", "keras", "mlflow", "numpy")]


def record_evaluation(model: keras.Model, data: MnistData, batch_size: int) -> dict[str, float]:
    """Evaluates `model` on the test set and logs to the active run: test metrics, figures, the model itself.

    Returns the test metrics (`test_loss`, `test_accuracy`).
    """
    mlflow.log_metric(OPTIMIZER_STEPS_METRIC, int(model.optimizer.iterations))  # updates made: fast == plain
    test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0)
    metrics = {"test_loss": test_loss, "test_accuracy": test_accuracy}
    mlflow.log_metrics(metrics)

    probabilities = model.predict(data.x_test, batch_size=batch_size, verbose=0)
    labels, predicted = data.y_test.argmax(axis=1), probabilities.argmax(axis=1)
    mlflow.log_figure(figures.misclassified(data.x_test, labels, probabilities), "figures/misclassified.png")
    mlflow.log_figure(figures.confusion_matrix(labels, predicted), "figures/confusion_matrix.png")
    mlflow.keras.log_model(model, name="model", signature=infer_signature(data.x_test[:5], probabilities[:5]),
                           pip_requirements=model_requirements())
    return metrics
