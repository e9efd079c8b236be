"""The best epoch of every run, and early stopping that restores it, also across a stop and a resume."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mnist_tracking.errors import ConfigError
from mnist_tracking.names import BEST_EPOCH_METRIC, STOPPED_EPOCH_TAG
from mnist_tracking.train import train
from tests.helpers import runs
from tests.test_resume import stopped_run

# On the fixture no epoch improves val_accuracy by 1: the first epoch is the best, and the fit stops `patience`
# epochs later (with patience 2: after epoch 2, of 0, 1, 2), whatever the weights do.
PLATEAU = ("callbacks=early_stopping", "callbacks.early_stopping.min_delta=1.0", "callbacks.early_stopping.patience=2")


def history(store: str, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(mlflow.MlflowClient(store).get_metric_history(run_id, name), key=lambda m: m.step)]


@pytest.mark.parametrize(
    ("metric", "direction", "best"), [("val_accuracy", "maximize", np.argmax), ("val_loss", "minimize", np.argmin)]
)
def test_every_epoch_logs_the_best_value_so_far_and_its_epoch(make_cfg, store, metric, direction, best):
    train(make_cfg("trainer.epochs=4", f"optimized_metric={metric}", f"optimized_direction={direction}"))
    [run] = runs(store)
    values = history(store, run.info.run_id, metric)
    assert len(values) == 4
    assert history(store, run.info.run_id, f"best_{metric}") == [values[best(values[: n + 1])] for n in range(4)]
    assert history(store, run.info.run_id, BEST_EPOCH_METRIC) == [float(best(values[: n + 1])) for n in range(4)]
    assert STOPPED_EPOCH_TAG not in run.data.tags  # it ran every epoch


def test_a_test_metric_is_followed_by_its_validation_counterpart(make_cfg, store):
    train(make_cfg("optimized_metric=test_loss", "optimized_direction=minimize"))
    [run] = runs(store)
    assert run.data.metrics["best_val_loss"] == min(history(store, run.info.run_id, "val_loss"))


def test_a_resumed_run_logs_its_best_epoch_over_all_its_epochs(make_cfg, store, monkeypatch):
    whole = train(make_cfg("trainer.epochs=4", "trainer.resume=false"))
    stopped = stopped_run(make_cfg, store, monkeypatch, "trainer.epochs=4", epoch=1)
    train(make_cfg("trainer.epochs=4"))
    run = mlflow.MlflowClient(store).get_run(stopped.info.run_id)
    assert run.info.status == "FINISHED"
    values = history(store, run.info.run_id, "val_accuracy")
    assert run.data.metrics["best_val_accuracy"] == max(values)
    assert run.data.metrics[BEST_EPOCH_METRIC] == float(np.argmax(values))
    assert len(history(store, run.info.run_id, BEST_EPOCH_METRIC)) == 4  # one per epoch, none twice
    assert run.data.metrics["val_accuracy"] == pytest.approx(whole["val_accuracy"], abs=1e-6)


def test_early_stopping_stops_a_plateau_and_tests_the_best_weights(make_cfg, store):
    one_epoch = train(make_cfg("trainer.epochs=1"))  # the weights of epoch 0, the plateau's best
    stopped = train(make_cfg(*PLATEAU, "trainer.epochs=8"))
    run = next(r for r in runs(store) if r.data.params["trainer.epochs"] == "8")
    assert run.info.status == "FINISHED" and run.data.tags[STOPPED_EPOCH_TAG] == "2"
    assert len(history(store, run.info.run_id, "loss")) == 3
    for name in ("test_accuracy", "test_loss", "val_accuracy"):  # the best epoch's model, tested and returned
        assert stopped[name] == pytest.approx(one_epoch[name], abs=1e-6), name
    client = mlflow.MlflowClient(store)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == [0]  # the model's epoch
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    [model] = [m for m in models if m.source_run_id == run.info.run_id]
    assert {m.step for m in model.metrics} == {0}


@pytest.mark.backends
def test_a_stopped_and_resumed_run_stops_at_the_same_epoch(make_cfg, store, monkeypatch):
    whole = train(make_cfg(*PLATEAU, "trainer.epochs=8", "trainer.resume=false"))
    # Stopped after epoch 1: patience half used, the best weights (epoch 0's) not the model's. Both must come back.
    stopped = stopped_run(make_cfg, store, monkeypatch, *PLATEAU, "trainer.epochs=8", epoch=1)
    resumed = train(make_cfg(*PLATEAU, "trainer.epochs=8"))
    run = mlflow.MlflowClient(store).get_run(stopped.info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == "2"
    assert run.data.tags[STOPPED_EPOCH_TAG] == "2"
    for name in ("test_accuracy", "test_loss", "val_accuracy"):
        assert resumed[name] == pytest.approx(whole[name], abs=1e-6), name


def test_early_stopping_on_a_test_metric_is_refused_before_any_run(make_cfg, store):
    with pytest.raises(
        ConfigError, match=r"callbacks.early_stopping.monitor='test_accuracy' is invalid: .*val_accuracy"
    ):
        train(make_cfg("callbacks=early_stopping", "optimized_metric=test_accuracy"))
    assert runs(store) == []
