"""MlflowCallback on its own, in a plain model.fit outside Hydra."""

from __future__ import annotations

import keras
import mlflow
import pytest

from mnist_tracking.ml.mnist import load_mnist
from mnist_tracking.tracking.callback import MlflowCallback
from tests.helpers import FIXTURE

pytestmark = pytest.mark.backends  # every test here: `make test` runs them on each Keras backend


@pytest.fixture
def fit_args():
    data = load_mnist(str(FIXTURE), "standard", validation_split=0.25, limit_train=400, limit_test=None)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return model, data


def test_one_point_per_epoch_for_each_metric(store, fit_args):
    model, data = fit_args
    mlflow.set_tracking_uri(store)
    with mlflow.start_run() as run:
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=3,
            verbose=0,
            callbacks=[MlflowCallback()],
        )
    client = mlflow.MlflowClient()
    finished = client.get_run(run.info.run_id)
    # No validation_* copies; the best val_accuracy so far and its epoch (the callback's default monitor).
    assert set(finished.data.metrics) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "best_val_accuracy",
        "best_epoch",
    }
    for name in finished.data.metrics:
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [0, 1, 2]
    assert finished.data.params == {"total_params": "7850", "trainable_params": "7850"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "figures")
    }
    assert {"model_summary.txt", "figures/learning_curves.png"} <= artifacts
    summary = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_summary.txt")
    assert "Trainable params: 7,850" in summary  # "Total" counts the optimizer's too where it is built (JAX)


def test_logs_to_an_explicit_run_and_resets_between_fits(store, fit_args):
    model, data = fit_args
    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("plain")).info.run_id
    callback = MlflowCallback(run_id=run_id)
    model.fit(data.x_train, data.y_train, epochs=2, verbose=0, callbacks=[callback])
    assert callback.history.keys() == {"loss", "accuracy"} and len(callback.history["loss"]) == 2
    assert len(client.get_metric_history(run_id, "loss")) == 2
    model.fit(data.x_train, data.y_train, epochs=1, verbose=0, callbacks=[callback])
    assert len(callback.history["loss"]) == 1


def test_without_a_run_it_says_how_to_get_one(store, fit_args):
    model, data = fit_args
    mlflow.set_tracking_uri(store)
    with pytest.raises(RuntimeError, match="mlflow.start_run"):
        model.fit(data.x_train[:10], data.y_train[:10], epochs=1, verbose=0, callbacks=[MlflowCallback()])


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal, however the suite was started (a script's
    background job ignores SIGINT)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_that_something_swallowed_still_stops_the_fit(fit_args, ctrl_c_raises):
    import os
    import signal

    import keras

    from mnist_tracking.ml.callbacks import KeepInterrupts

    model, data = fit_args
    epochs = []

    def swallow(epoch, logs):  # as Keras's own pythonify_logs does on JAX, with a bare except
        epochs.append(epoch)
        if epoch == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except BaseException:
                pass

    with KeepInterrupts() as interrupts, pytest.raises(KeyboardInterrupt, match="raised again after Keras swallowed"):
        model.fit(
            data.x_train,
            data.y_train,
            epochs=5,
            verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=swallow), interrupts],
        )
    assert epochs == [0, 1]  # stopped at the end of the epoch the signal came in
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
