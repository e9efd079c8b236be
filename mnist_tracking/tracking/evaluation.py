"""The end of a run: the trained model evaluated on the test set, and that evaluation recorded with the model."""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import version

import keras
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from mnist_tracking.ml import figures
from mnist_tracking.ml.data import Dataset
from mnist_tracking.ml.fit import without_confusion_counts
from mnist_tracking.ml.models import on_raw_pixels
from mnist_tracking.names import MOST_CONFUSED_TAG, OPTIMIZER_STEPS_METRIC
from mnist_tracking.tracking import model_flavor


@functools.cache
def model_requirements() -> list[str]:
    """What the logged model needs: Keras on the backend it was trained with, pinned. Given to MLflow so that it
    does not infer them in a subprocess (~12 s a model here)."""
    backend = ("jax", "jaxlib") if keras.backend.backend() == "jax" else ("tensorflow",)
    return [f"{name}=={version(name)}" for name in (*backend, "keras", "mlflow", "numpy")]


def per_class_scores(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int, most: int = 3
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Precision, recall and F1 of each digit and their macro averages (as `test_precision_3`, `test_macro_f1`, ...),
    the same per digit as a table, and the `most` most-confused pairs (true, predicted, count), most first.

    From the confusion counts directly: `mlflow.models.evaluate` on the same predictions took 2.1 s here and
    logs weighted, not per-digit, metrics. A digit never predicted has precision 0.
    """
    counts = np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
    hits = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(hits / counts.sum(axis=0))
        recall = np.nan_to_num(hits / counts.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    table = pd.DataFrame(
        {"digit": range(num_classes), "precision": precision, "recall": recall, "f1": f1, "support": counts.sum(axis=1)}
    )
    scores = {
        f"test_{name}_{digit}": float(value)
        for name in ("precision", "recall", "f1")
        for digit, value in enumerate(table[name])
    }
    scores |= {f"test_macro_{name}": float(table[name].mean()) for name in ("precision", "recall", "f1")}
    off = counts * (1 - np.eye(num_classes, dtype=int))
    pairs = sorted(
        ((int(off[t, p]), t, p) for t in range(num_classes) for p in range(num_classes) if off[t, p]), reverse=True
    )[:most]
    confused = pd.DataFrame([(t, p, n) for n, t, p in pairs], columns=["true", "predicted", "count"])
    return scores, table, confused


def misclassified_table(
    data: Dataset, labels: np.ndarray, probabilities: np.ndarray, rows: int | None = None
) -> pd.DataFrame:
    """One row per misclassified test digit, those the model was surest of first (the first `rows`; None: all): its
    index in the test set, the digit as an image (MLflow's image column type: the UI shows it in the table), its
    true and predicted class, and the probability of the prediction."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:rows]
    raw = (data.x_test[wrong] - data.offset) / data.scale  # the pixels as the images hold them
    pixels = np.clip(np.rint(raw * 255 / data.max_value), 0, 255).astype(np.uint8)
    return pd.DataFrame(
        {
            "test_index": wrong,
            "image": [mlflow.Image(image.reshape(image.shape[0], -1)) for image in pixels],
            "true": labels[wrong],
            "predicted": predicted[wrong],
            "probability": probabilities[wrong, predicted[wrong]].astype(float).round(4),
        }
    )


def signature(data: Dataset) -> ModelSignature:
    """What the logged model takes and gives: raw pixels as an image holds them, and one probability per class."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *data.input_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, data.num_classes))]),
    )


def record_evaluation(
    model: keras.Model,
    data: Dataset,
    batch_size: int,
    epoch: int,
    test_set: mlflow.data.Dataset | None = None,
    log_figure: Callable[[Figure, str], None] = mlflow.log_figure,
    table_rows: int | None = None,
) -> dict[str, float]:
    """Evaluates `model` (its weights as of `epoch`, 0-based) on the test set and logs to the active run: test
    metrics (per digit too), the per-digit table, most-confused pairs and misclassified digits, figures (through `log_figure`:
    `mlflow.log_figure` by default), and the model itself, taking raw pixels (the data's normalization inside it).

    The model is logged at step `epoch`, so that MLflow's logged-model record carries that epoch's metrics; the
    test metrics go to the run and the model at the same step, with the `test_set` dataset (`mnist_test`, say) they
    were measured on.

    Returns the test metrics (`test_loss`, `test_accuracy`).
    """
    mlflow.log_metric(OPTIMIZER_STEPS_METRIC, int(model.optimizer.iterations))  # updates made: fast == plain
    scores = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0, return_dict=True)
    metrics = {"test_loss": float(scores["loss"]), "test_accuracy": float(scores["accuracy"])}

    probabilities = model.predict(data.x_test, batch_size=batch_size, verbose=0)
    labels, predicted = data.y_test.argmax(axis=1), probabilities.argmax(axis=1)
    log_figure(figures.misclassified(data.x_test, labels, probabilities), "figures/misclassified.png")
    mlflow.log_table(misclassified_table(data, labels, probabilities, table_rows), "evaluation/misclassified.json")
    log_figure(figures.confusion_matrix(labels, predicted, data.num_classes), "figures/confusion_matrix.png")
    scores, table, confused = per_class_scores(labels, predicted, data.num_classes)
    mlflow.log_table(table, "evaluation/per_class.json")
    mlflow.log_table(confused, "evaluation/most_confused.json")
    mlflow.set_tag(MOST_CONFUSED_TAG, ", ".join(f"{t}→{p} ({n})" for t, p, n in confused.itertuples(index=False)))
    without_confusion_counts(model)  # the logged model loads where this package is not installed
    # At `epoch`'s step: MLflow links the run's metrics of that step (the epoch's) to the model.
    info = model_flavor.log_model(
        on_raw_pixels(model, data.scale, data.offset),
        name="model",
        signature=signature(data),
        pip_requirements=model_requirements(),
        step=epoch,
    )
    mlflow.log_metrics(metrics | scores, step=epoch, dataset=test_set, model_id=info.model_id)
    return metrics
