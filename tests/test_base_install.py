"""The install users get: what the docs show for the base install (`make study`), run as a user would.

`make test` runs this module again in a venv that holds only the base install and pytest, with
MNIST_TRACKING_BASE_INSTALL=1 (then TensorFlow must be absent). Every command runs in a subprocess with no
`KERAS_BACKEND`, as a user's shell has none; in the full test venv the same commands show that TensorFlow
being installed changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from tests.docs import tagged
from tests.helpers import FIXTURE, store_of
from tests.test_serving import free_port, serve, stop, wait_until_up

pytestmark = [pytest.mark.base_install, pytest.mark.slow]

BASE_INSTALL = os.environ.get("MNIST_TRACKING_BASE_INSTALL") == "1"


def user_env() -> dict[str, str]:
    """A user's shell: no KERAS_BACKEND, no tracking URI (the default ./mlruns store)."""
    return {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "MLFLOW_TRACKING_URI")}


def python(args: list[str], cwd: Path) -> str:
    """Runs `python ARGS` as a user would; returns its stdout, failing the test with its output if it fails."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_base_install_has_no_tensorflow():
    """The base stage's premise: what `make study` installs has no TensorFlow (the full test venv has)."""
    assert (importlib.util.find_spec("tensorflow") is None) == BASE_INSTALL


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Path:
    """The repository root of a user who trained a sweep on the fixture (so `mlruns/` holds a champion) and saved
    the first five test digits as first5.npy, as the docs do; the data where the docs put it, ../shared/data/."""
    base = tmp_path_factory.mktemp("user")
    (base / "shared" / "data").mkdir(parents=True)
    (base / "shared" / "data" / "mnist.npz").symlink_to(FIXTURE)
    folder = base / "repo"
    folder.mkdir()
    python(
        [
            "-m",
            "mnist_tracking.train",
            "-m",
            "model=mlp64",
            "data.path=../shared/data/mnist.npz",
            "trainer.epochs=3",
            f"hydra.sweep.dir={folder}/multirun",
        ],
        folder,
    )
    np.save(folder / "first5.npy", np.load(FIXTURE)["x_test"][:5])
    return folder


def predicted(folder: Path) -> list[int]:
    """The digits that `python -m mnist_tracking.predict first5.npy` prints."""
    out = python(["-m", "mnist_tracking.predict", "first5.npy"], folder)
    return [int(line.rsplit(": ", 1)[1].split()[0]) for line in out.splitlines()]


def test_predict_and_report_run_on_the_projects_backend(champion):
    digits = predicted(champion)
    assert len(digits) == 5 and np.mean(np.array(digits) == [7, 2, 1, 0, 4]) >= 0.6  # a trained model
    assert "1 jobs, best first" in python(["-m", "mnist_tracking.report"], champion)


@pytest.mark.parametrize("block", tagged("base-install"), ids=str)
def test_each_python_snippet_the_docs_show_runs_as_shown(champion, block):
    assert block.lang == "python"
    python(["-c", block.code], champion)


def test_the_pyfunc_snippet_prints_the_digits_predict_prints(champion):
    [snippet] = [
        block for block in tagged("base-install") if "pyfunc.load_model" in block.code and "argmax" in block.code
    ]
    out = python(["-c", snippet.code], champion)
    assert out.split("\n")[-2] == str(np.array(predicted(champion)))


def test_a_loaded_model_runs_on_the_backend_it_was_trained_with(champion):
    out = python(
        [
            "-c",
            "import sys, mlflow; mlflow.set_tracking_uri('sqlite:///mlruns/mlflow.db'); "
            "mlflow.pyfunc.load_model('models:/mnist-best@champion'); import keras; "
            "print(keras.backend.backend(), 'tensorflow' in sys.modules)",
        ],
        champion,
    )
    assert out.split() == ["jax", "False"]  # TensorFlow not even imported, installed or not


def test_the_callback_snippet_logs_its_fit(champion):
    [snippet] = [block for block in tagged("base-install") if "MlflowCallback" in block.code]
    python(["-c", snippet.code], champion)
    client = mlflow.MlflowClient(store_of(champion))
    # The newest run of MLflow's Default experiment (the snippet names none; another test runs it too).
    [run] = client.search_runs(["0"], order_by=["attributes.start_time DESC"], max_results=1)
    epochs = len(client.get_metric_history(run.info.run_id, "val_accuracy"))
    assert run.info.status == "FINISHED" and epochs == 10 and run.data.params["total_params"] == "7850"


def test_the_champion_serves_from_the_venv(champion):
    port = free_port()
    server = serve("models:/mnist-best@champion", store_of(champion), port, env=user_env())
    try:
        wait_until_up(server, port)
        pixels = np.load(champion / "first5.npy")
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": pixels.tolist()}, timeout=60)
        assert response.status_code == 200, response.text
        assert np.asarray(response.json()["predictions"]).argmax(axis=1).tolist() == predicted(champion)
    finally:
        stop(server)
