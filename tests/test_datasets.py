"""The dataset seam: scikit-learn's 8x8 digits through the same train, record, predict and resume as MNIST."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mnist_tracking import predict
from mnist_tracking.ml.digits import digits
from mnist_tracking.train import train
from tests.helpers import BACKEND, compose_config, run_cli, runs
from tests.test_resume import stopped_run

DIGITS = ["data=digits", "model=mlp64", "trainer.epochs=3"]


@pytest.fixture
def digits_cfg(store: str):
    """Composes a digits config that logs to this test's store (the quick configs' data.path is MNIST's)."""
    return lambda *overrides: compose_config([f"mlflow.tracking_uri={store}", f"backend={BACKEND}", *overrides])


def raw_digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:n].astype(np.uint8)  # raw pixels, 0-16, as the dataset holds them


def test_digits_is_a_dataset_like_mnist():
    data = digits(limit_train=200)
    assert data.name == "digits" and data.input_shape == (8, 8) and data.num_classes == 10 and data.max_value == 16
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (150, 50, 360)
    assert data.y_train.shape == (150, 10) and data.x_train.dtype == np.float32
    # The logged model's own normalization (raw * scale + offset) gives what training saw.
    unit, standard = digits(normalization="unit"), digits()
    raw = np.rint(unit.x_train * 16)
    assert unit.x_train.max() == 1 and raw.max() == 16
    np.testing.assert_allclose(raw * standard.scale + standard.offset, standard.x_train, atol=1e-5)
    assert abs(float(np.concatenate([standard.x_train, standard.x_val]).mean())) < 1e-4  # its own mean and std
    again = digits()
    assert again.digests == digits().digests and again.digests != digits(normalization="unit").digests


@pytest.mark.backends
def test_digits_trains_records_and_predicts_raw_8x8_digits(digits_cfg, store, tmp_path, capsys):
    metrics = train(digits_cfg(*DIGITS))
    [run] = runs(store)
    assert run.info.status == "FINISHED" and metrics["test_accuracy"] > 0.5
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"digits_train", "digits_validation", "digits_test"}
    mlflow.set_tracking_uri(store)
    uri = f"runs:/{run.info.run_id}/model"
    assert mlflow.models.get_model_info(uri).signature.inputs.inputs[0].shape == (-1, 8, 8)
    pixels = raw_digits(5)
    expected = mlflow.pyfunc.load_model(uri).predict(pixels)  # pyfunc: raw 8x8 digits in, probabilities out
    assert expected.shape == (5, 10)
    np.save(tmp_path / "digits.npy", pixels)
    capsys.readouterr()
    predict.main([str(tmp_path / "digits.npy"), "--model", uri, "--tracking-uri", store])
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"{tmp_path / 'digits.npy'}[{i}]: {int(row.argmax())} (p={row.max():.4f})" for i, row in enumerate(expected)
    ]
    np.save(tmp_path / "mnist.npy", np.zeros((2, 28, 28), np.uint8))  # MNIST-sized images: what it takes, said
    with pytest.raises(SystemExit, match=r"shape \(2, 28, 28\) is invalid: give 8x8 images"):
        predict.main([str(tmp_path / "mnist.npy"), "--model", uri, "--tracking-uri", store])


@pytest.mark.backends
def test_a_stopped_digits_run_continues(digits_cfg, store, monkeypatch):
    stopped = stopped_run(digits_cfg, store, monkeypatch, *DIGITS, epoch=0)
    train(digits_cfg(*DIGITS))
    [run] = runs(store)
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == "1"
    assert len(mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_accuracy")) == 3


@pytest.mark.slow
def test_digits_from_the_command_line(tmp_path):
    code, out = run_cli(["data=digits", "model=mlp64", "trainer.epochs=2"], tmp_path)
    assert code == 0, out
    [run] = runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "FINISHED" and run.data.params["data._target_"] == "mnist_tracking.ml.digits.digits"
