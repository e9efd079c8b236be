"""Per-digit evaluation: precision, recall and F1 of each digit, their macro averages, the most-confused pairs."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mnist_tracking.evaluation import per_class_scores
from mnist_tracking.train import train
from tests.helpers import artifact_paths, runs


def test_scores_from_the_confusion_counts():
    labels, predicted = np.array([0, 0, 1, 1, 2, 2, 2]), np.array([0, 1, 1, 1, 2, 0, 0])
    scores, table, confused = per_class_scores(labels, predicted, num_classes=3)
    # Digit 0 is predicted 3 times, once rightly; it is 2 of the labels: precision 1/3, recall 1/2.
    assert scores["test_precision_0"] == pytest.approx(1 / 3) and scores["test_recall_0"] == pytest.approx(1 / 2)
    assert scores["test_f1_0"] == pytest.approx(0.4) and scores["test_precision_2"] == 1.0
    assert scores["test_macro_f1"] == pytest.approx((0.4 + 0.8 + 0.5) / 3)
    assert list(table["support"]) == [2, 2, 3]
    assert confused.values.tolist() == [[2, 0, 2], [0, 1, 1]]  # true, predicted, count: most first


def test_a_run_records_per_digit_scores(make_cfg, store):
    metrics = train(make_cfg("trainer.epochs=1"))
    [run] = runs(store)
    recorded = run.data.metrics
    assert {f"test_{name}_{digit}" for name in ("precision", "recall", "f1") for digit in range(10)} <= recorded.keys()
    assert {"test_macro_precision", "test_macro_recall", "test_macro_f1"} <= recorded.keys()
    # Recall weighted by each digit's share of the test set is the accuracy.
    client = mlflow.MlflowClient(store)
    table = client.load_table(run.info.experiment_id, "evaluation/per_class.json", run_ids=[run.info.run_id])
    weighted = sum(recorded[f"test_recall_{d}"] * n for d, n in zip(table["digit"], table["support"])) / table["support"].sum()
    assert weighted == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert {"evaluation/per_class.json", "evaluation/most_confused.json"} <= artifact_paths(client, run.info.run_id)
    assert run.data.tags["most_confused"].count("→") == 3
