"""Per-digit evaluation: precision, recall and F1 of each digit, their macro averages, the most-confused pairs."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mnist_tracking.tracking.evaluation import per_class_scores
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
    weighted = (
        sum(recorded[f"test_recall_{d}"] * n for d, n in zip(table["digit"], table["support"])) / table["support"].sum()
    )
    assert weighted == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert {"evaluation/per_class.json", "evaluation/most_confused.json"} <= artifact_paths(client, run.info.run_id)
    assert run.data.tags["most_confused"].count("→") == 3


def test_the_logged_model_carries_its_last_epochs_metrics_its_test_set_and_the_runs_params(make_cfg, store):
    """MLflow 3's logged-model record (the Models tab, search_logged_models): the saved weights' epoch, not epoch 0."""
    train(make_cfg("trainer.epochs=3"))
    [run] = runs(store)
    client = mlflow.MlflowClient(store)
    [model] = client.search_logged_models([run.info.experiment_id])
    linked = {(m.key, m.dataset_name): m for m in model.metrics}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        last = max(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert last.step == 2
        assert (linked[key, None].value, linked[key, None].step) == (last.value, 2), key
    [test_set] = [d.dataset for d in run.inputs.dataset_inputs if d.dataset.name == "mnist_test"]
    for key in ("test_accuracy", "test_loss", "test_macro_precision", "test_macro_recall", "test_macro_f1"):
        metric = linked[key, "mnist_test"]
        assert (metric.value, metric.step, metric.dataset_digest) == (run.data.metrics[key], 2, test_set.digest)
    assert {key: model.params[key] for key in run.data.params} == run.data.params


def test_logged_models_rank_by_their_final_validation_accuracy(make_cfg, store):
    for model in ("dense", "mlp64"):
        train(make_cfg(f"model={model}"))
    finals = {run.info.run_id: run.data.metrics["val_accuracy"] for run in runs(store)}
    ranked = mlflow.MlflowClient(store).search_logged_models(
        [runs(store)[0].info.experiment_id], order_by=[{"field_name": "metrics.val_accuracy", "ascending": False}]
    )
    assert [m.source_run_id for m in ranked] == sorted(finals, key=finals.get, reverse=True)
    assert [next(x.value for x in m.metrics if x.key == "val_accuracy") for m in ranked] == sorted(
        finals.values(), reverse=True
    )
