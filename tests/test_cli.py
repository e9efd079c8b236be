"""The real command in a subprocess: the study sweep, bad input, offline data, being killed."""

from __future__ import annotations

import pstats
import subprocess
import sys
import time

import mlflow
import pytest

from tests.helpers import (
    ARTIFACTS,
    FIXTURE,
    artifact_paths,
    cli,
    cli_env,
    read_until,
    run_cli,
    runs,
    signal_while_training,
)

pytestmark = pytest.mark.slow


def test_study_sweep_records_two_complete_runs(tmp_path):
    code, out = run_cli(["-m", "model=dense,mlp64", "trainer.epochs=2", f"data.path={FIXTURE}"], tmp_path)
    assert code == 0, out
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # the default: mlruns/ in the launch dir
    all_runs = runs(store)
    [parent] = [r for r in all_runs if r.data.tags.get("sweep") == "true"]
    found = {r.data.params["model.hidden_units"]: r for r in all_runs if r.info.run_id != parent.info.run_id}
    assert found.keys() == {"[]", "64"}
    client = mlflow.MlflowClient(store)
    for hidden, params in (("[]", "7850"), ("64", "50890")):
        run = found[hidden]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {
            "optimizer.learning_rate": "0.01",
            "data.batch_size": "32",
            "trainer.epochs": "2",
            "seed": "42",
            "total_params": params,
        }.items() <= run.data.params.items()
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0, 1]
        assert {"test_loss", "test_accuracy"} <= run.data.metrics.keys()
        assert ARTIFACTS <= artifact_paths(client, run.info.run_id)
        [model] = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert model.name == "model"
        assert run.info.run_id in out
    assert found["[]"].info.run_name == "data.path=mnist_small.npz,model=dense,trainer.epochs=2"
    assert f"See it with: mlflow ui --backend-store-uri {store}" in out
    assert "epoch 2/2: accuracy=" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["optimizer.learning_rate=-1"], 2, "optimizer.learning_rate=-1 is invalid: use a number > 0"),
        (["model=resnet"], 1, "Could not find 'model/resnet'"),
        (["data.path=missing.npz"], 2, "data.path='missing.npz' is invalid: no such file"),
    ],
)
def test_bad_input_exits_with_a_clear_message_and_no_run(tmp_path, args, code, message):
    returncode, out = run_cli([f"data.path={FIXTURE}", *args], tmp_path)
    assert returncode == code, out
    assert message in out
    assert "Traceback" not in out
    assert runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") == []


def test_a_sweep_over_the_backend_is_refused_before_any_job(tmp_path):
    returncode, out = run_cli(["-m", "backend=jax,tensorflow", f"data.path={FIXTURE}"], tmp_path)
    assert returncode == 2, out
    assert "backend='jax,tensorflow' is invalid: a multirun cannot sweep it" in out
    assert runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") == []


# The command where one backend's package is not installed: Python's path finder does not find it, as if pip had not
# installed it.
WITHOUT = """
import atexit, runpy, sys
from importlib.machinery import PathFinder
absent, find = sys.argv[1], PathFinder.find_spec
PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split(".")[0] == absent else find(name, path, target))
sys.argv = ["mnist_tracking.train", *sys.argv[2:]]
# At exit, as an exit handler: a successful command ends with os._exit once the handlers have run.
atexit.register(lambda: print("imported:", sorted({m.split(".")[0] for m in sys.modules} & {"jax", "sklearn",
                                                                                         "tensorflow"}), flush=True))
runpy.run_module("mnist_tracking.train", run_name="__main__")
"""


def test_a_jax_run_needs_no_tensorflow_and_a_tensorflow_run_says_to_install_it(tmp_path):
    fixed = [f"data.path={FIXTURE}", "trainer.epochs=1", f"hydra.run.dir={tmp_path}/outputs"]
    env = cli_env()  # the default store: mlruns/ here

    def without_tensorflow(backend: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-c", WITHOUT, "tensorflow", f"backend={backend}", *fixed]
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    jax_only = without_tensorflow("jax")
    out = jax_only.stdout + jax_only.stderr
    assert jax_only.returncode == 0, out
    # Trained, evaluated and logged its model without TensorFlow, and without the scikit-learn that MLflow installs
    # (Keras would import it at start-up: speedups.import_keras).
    assert "imported: ['jax']" in out
    [run] = runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "FINISHED" and run.outputs.model_outputs
    # The job's log is flushed whole when the process ends.
    assert (tmp_path / "outputs" / "train.log").read_text().splitlines()[-1].endswith(f"run {run.info.run_id})")

    refused = without_tensorflow("tensorflow")
    out = refused.stdout + refused.stderr
    assert refused.returncode == 2, out
    assert (
        "backend='tensorflow' is invalid here: tensorflow is not installed. Install it "
        "(pip install -e '.[tensorflow]'), or use backend=jax."
    ) in out
    assert len(runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")) == 1  # nothing recorded for it


def test_a_run_under_cprofile_keeps_its_profile(tmp_path):
    # A profiler writes its report only after the program returns: the command returns as any program does.
    env = cli_env()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(tmp_path / "train.prof"),
            "-m",
            "mnist_tracking.train",
            f"data.path={FIXTURE}",
            "trainer.epochs=1",
            f"hydra.run.dir={tmp_path}/outputs",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert any(name == "train" for _, _, name in pstats.Stats(str(tmp_path / "train.prof")).stats)


def test_offline_without_cached_data_names_data_path(tmp_path):
    offline = {
        "KERAS_HOME": str(tmp_path / "keras"),
        "HOME": str(tmp_path),  # an empty Keras cache
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "no_proxy": "",
    }
    returncode, out = run_cli(["data.path=null"], tmp_path, offline)
    assert returncode == 2, out
    assert "MNIST is not in Keras's cache" in out and "set data.path=/path/to/mnist.npz" in out
    assert runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}") == []


def test_sigterm_marks_the_run_killed(tmp_path):
    code, out = signal_while_training([f"data.path={FIXTURE}"], tmp_path)
    assert code != 0
    [run] = runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert run.info.status == "KILLED", out
    assert "ended KILLED" in out


def test_kill_9_leaves_a_run_the_stale_listing_finds(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = cli([f"data.path={FIXTURE}", "trainer.epochs=500"], tmp_path)
    read_until(proc, "epoch 2/500")
    proc.kill()  # SIGKILL: nothing in the process can react
    proc.communicate(timeout=60)
    [run] = runs(store)
    assert run.info.status == "RUNNING"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_tracking.report",
            "--stale",
            "--older-than",
            "0",
            "--mark-failed",
            "--tracking-uri",
            store,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert run.info.run_id in out.stdout
    [run] = runs(store)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("sweep", [[], ["-m", "model=dense,mlp64"]], ids=["single", "sweep"])
def test_unreachable_tracking_server_fails_fast_and_names_it(tmp_path, sweep):
    uri = "http://alice:s3cret@127.0.0.1:9"  # nothing listens on the discard port
    start = time.monotonic()
    code, out = run_cli([*sweep, f"data.path={FIXTURE}", f"mlflow.tracking_uri={uri}"], tmp_path)
    assert time.monotonic() - start < 30
    assert code == 2, out
    assert "mlflow.tracking_uri='http://127.0.0.1:9' is unreachable" in out  # the user became alice's login
    assert "s3cret" not in out
