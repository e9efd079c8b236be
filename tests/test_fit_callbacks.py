"""Keras callbacks added from config (the `callbacks` group), and the metrics they add, kept across a resume."""

from __future__ import annotations

import mlflow
import pytest

from mnist_tracking.errors import ConfigError
from mnist_tracking.train import train
from tests.helpers import runs
from tests.test_resume import stopped_run


def test_early_stopping_from_config_ends_the_fit_and_the_run_finishes(make_cfg, store):
    # No epoch can improve val_loss by 100: the fit stops after patience=1 epoch without improvement.
    cfg = make_cfg(
        "callbacks=early_stopping",
        "callbacks.early_stopping.min_delta=100",
        "callbacks.early_stopping.patience=1",
        "trainer.epochs=5",
    )
    train(cfg)
    [run] = runs(store)
    assert run.info.status == "FINISHED" and run.data.params["callbacks.early_stopping.patience"] == "1"
    assert len(mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "loss")) == 2
    assert "test_accuracy" in run.data.metrics  # evaluated and logged as after a full fit


@pytest.mark.backends
def test_a_metric_a_callback_adds_survives_a_resume(make_cfg, store, monkeypatch):
    overrides = ("callbacks=lr_schedule", "trainer.epochs=3")
    stopped = stopped_run(make_cfg, store, monkeypatch, *overrides, epoch=0)
    client = mlflow.MlflowClient(store)
    assert [m.step for m in client.get_metric_history(stopped.info.run_id, "learning_rate")] == [0]
    train(make_cfg(*overrides))
    [run] = runs(store)
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "learning_rate")) == [0, 1, 2]


def test_a_callback_from_the_command_line(make_cfg, store):
    train(
        make_cfg(
            "+callbacks.stop._target_=keras.callbacks.EarlyStopping",
            "+callbacks.stop.monitor=loss",
            "+callbacks.stop.min_delta=100",
            "+callbacks.stop.patience=0",
            "trainer.epochs=4",
        )
    )
    [run] = runs(store)  # Keras's EarlyStopping never stops after the first epoch: two of four
    assert len(mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "loss")) == 2


def test_a_callback_entry_without_a_target_is_refused_before_any_run(make_cfg, store):
    with pytest.raises(ConfigError, match=r"callbacks.stop=.* is invalid: give a Keras callback as a mapping"):
        train(make_cfg("+callbacks.stop.patience=1"))
    assert runs(store) == []
