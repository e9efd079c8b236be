"""train(cfg) end to end on the fixture: what every run records, and how every run ends."""

from __future__ import annotations

import os
import signal
import subprocess

import mlflow
import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from mnist_tracking.errors import RunFailedError
from mnist_tracking.ml import figures
from mnist_tracking.ml.mnist import normalize_images
from mnist_tracking.tracking.run import SigtermAsInterrupt
from mnist_tracking.train import train
from tests.helpers import ARTIFACTS, BACKEND, FIXTURE, QUICK, artifact_paths, compose_config, runs

PARAMS = {
    "model.hidden_units": "64",
    "model.activation": "relu",
    "optimizer.learning_rate": "0.01",
    "optimizer.momentum": "0.0",
    "data.batch_size": "32",
    "data.validation_split": "0.25",
    "data.path": str(FIXTURE),
    "trainer.epochs": "2",
    "seed": "42",
    "mlflow.experiment_name": "mnist",
    "total_params": "50890",
    "trainable_params": "50890",
}


@pytest.mark.backends
def test_a_run_records_config_metrics_artifacts_and_model(make_cfg, store):
    cfg = make_cfg("optimizer.learning_rate=0.01")
    metrics = train(cfg)

    [run] = runs(store)
    client = mlflow.MlflowClient(store)
    assert run.info.status == "FINISHED"
    assert PARAMS.items() <= run.data.params.items()
    assert run.data.params.keys() >= {
        "model._target_",
        "optimizer._target_",
        "data.limit_train",
        "data.limit_test",
        "mlflow.tracking_uri",
        "optimized_metric",
    }
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [0, 1], name
        assert history[-1].value == pytest.approx(metrics[name])
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert not any(name.startswith("validation_") for name in run.data.metrics)
    assert ARTIFACTS <= artifact_paths(client, run.info.run_id)

    # What it varies: not where it is tracked, and the data by file name.
    assert run.info.run_name == (
        f"backend={BACKEND},data.path=mnist_small.npz,optimizer.learning_rate=0.01,trainer.epochs=2"
    )
    assert run.data.tags["command"].endswith(
        f"python -m mnist_tracking.train data.path={FIXTURE} trainer.epochs=2 backend={BACKEND} "
        f"mlflow.tracking_uri={store} optimizer.learning_rate=0.01"
    )
    logged = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/config.yaml"))
    assert logged == cfg
    overrides = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/overrides.yaml"))
    assert overrides == [*QUICK, f"mlflow.tracking_uri={store}", "optimizer.learning_rate=0.01"]


def test_skip_finished_reuses_a_finished_run_and_reruns_one_left_running(make_cfg, store):
    cfg = make_cfg("sweep.skip_finished=true")
    train(cfg)
    train(cfg)  # the same config again: FINISHED already, nothing trains
    [run] = runs(store)
    # A job killed with kill -9 leaves its run RUNNING: that is not done, the next try trains again.
    mlflow.MlflowClient(store).update_run(run.info.run_id, status="RUNNING")
    train(cfg)
    assert sorted(r.info.status for r in runs(store)) == ["FINISHED", "RUNNING"]


@pytest.mark.backends
def test_logged_model_loads_and_predicts(make_cfg, store):
    metrics = train(make_cfg("model=dense"))
    [run] = runs(store)
    test = np.load(FIXTURE)
    pixels = test["x_test"]  # raw uint8 pixels: the model normalizes them itself, as training did
    mlflow.set_tracking_uri(store)
    uri = f"runs:/{run.info.run_id}/model"
    [spec] = mlflow.models.get_model_info(uri).signature.inputs.inputs
    assert spec.type == np.uint8 and spec.shape == (-1, 28, 28)
    pyfunc_probs = np.asarray(mlflow.pyfunc.load_model(uri).predict(pixels))
    keras_model = mlflow.keras.load_model(uri)
    assert pyfunc_probs.shape == (500, 10)
    np.testing.assert_allclose(pyfunc_probs, keras_model.predict(pixels, verbose=0), rtol=1e-5)
    # The trained network inside it, fed as training fed it, gives the same answers.
    trained = keras_model.layers[-1]
    np.testing.assert_allclose(
        pyfunc_probs, trained.predict(normalize_images(pixels, "standard"), verbose=0), atol=1e-5
    )
    accuracy = np.mean(pyfunc_probs.argmax(axis=1) == test["y_test"])
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_git_commit_is_tagged_inside_a_checkout(make_cfg, store, tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    train(make_cfg("trainer.epochs=1"))
    [run] = runs(store)
    assert run.data.tags["mlflow.source.git.commit"] == head


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_run_that_breaks_is_never_left_running(make_cfg, store, monkeypatch, error, status):
    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(figures, "misclassified", explode)
    with pytest.raises(type(error)):
        train(make_cfg("trainer.epochs=1"))
    [run] = runs(store)
    assert run.info.status == status
    assert len(mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_accuracy")) == 1


def test_default_store_is_mlruns_in_the_launch_dir(store, tmp_path):
    train(compose_config([*QUICK, "trainer.epochs=1"]))
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    [run] = runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts").as_uri())


def test_tracking_uri_env_wins_over_the_default(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    train(compose_config([*QUICK, "trainer.epochs=1", "mlflow.experiment_name=from-env"]))
    assert len(runs(store, "from-env")) == 1
    assert not (tmp_path / "mlruns").exists()


def test_a_failure_says_which_run_records_it(make_cfg, store, monkeypatch):
    monkeypatch.setattr(figures, "misclassified", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(RunFailedError) as info:
        train(make_cfg("trainer.epochs=1"))
    [run] = runs(store)
    assert info.value.run_id == run.info.run_id and run.info.status == "FAILED"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_sigterm_is_ctrl_c_only_inside_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with SigtermAsInterrupt(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_runs_record_their_datasets_and_share_digests_on_the_same_data(make_cfg, store):
    train(make_cfg("trainer.epochs=1"))
    train(make_cfg("trainer.epochs=1", "model=dense"))
    train(make_cfg("trainer.epochs=1", "data.limit_train=1000"))
    inputs = {}
    for run in mlflow.MlflowClient(store).search_runs([runs(store)[0].info.experiment_id], order_by=["start_time"]):
        found = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert found.keys() == {"training", "validation", "testing"}
        assert found["training"].name == "mnist_train" and str(FIXTURE) in found["training"].source
        inputs[run.data.params.get("data.limit_train"), run.data.params["model.hidden_units"]] = found
    same_data = inputs["None", "64"], inputs["None", "[]"]
    assert {d["training"].digest for d in same_data} == {same_data[0]["training"].digest}
    assert inputs["1000", "64"]["training"].digest != same_data[0]["training"].digest
    assert inputs["1000", "64"]["testing"].digest == same_data[0]["testing"].digest  # the test set is the same


def test_system_metrics_are_recorded_before_the_run_ends_unless_switched_off(make_cfg, store):
    train(make_cfg("trainer.epochs=1", "mlflow.system_metrics_interval=0.2"))
    train(make_cfg("trainer.epochs=1", "mlflow.log_system_metrics=false", "model=dense"))
    client = mlflow.MlflowClient(store)
    by_model = {run.data.params["model.hidden_units"]: run for run in runs(store)}
    on, off = by_model["64"], by_model["[]"]
    system = {name for name in on.data.metrics if name.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    samples = client.get_metric_history(on.info.run_id, "system/cpu_utilization_percentage")
    assert samples and max(m.timestamp for m in samples) <= on.info.end_time
    assert not any(name.startswith("system/") for name in off.data.metrics)
