"""The champion end to end: two sweeps, `predict` on real test PNGs, and `mlflow models serve` over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from tests.helpers import FIXTURE, cli_env, run_cli, store_of, sweep_runs
from tests.test_predict import write_pngs

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    model_uri: str, tracking_uri: str, port: int, env_manager: str = "local", env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`mlflow models serve` on loopback, as the docs show it (the virtual environment activated: MLflow starts
    `uvicorn` and `uv` from PATH), in its own process group; `env`: the shell's environment (default: this one's)."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **(os.environ if env is None else env),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": venv_bin + os.pathsep + os.environ["PATH"],
    }
    return subprocess.Popen(
        [
            f"{venv_bin}/mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            env_manager,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(server: subprocess.Popen) -> None:
    """Ends a server that `serve` started, with everything it started (uvicorn's workers)."""
    with contextlib.suppress(ProcessLookupError):  # it may have exited already: the test's assertion says why
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def wait_until_up(proc: subprocess.Popen, port: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited:\n{proc.stdout.read()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise AssertionError("the server did not answer /ping in time")


def test_a_worse_sweep_registers_but_the_champion_stays_and_serves(tmp_path):
    sweep = ["-m", "model=mlp64", f"data.path={FIXTURE}"]
    for epochs in (3, 1):  # the second deliberately worse
        code, out = run_cli([*sweep, f"trainer.epochs={epochs}"], tmp_path)
        assert code == 0, out
    store = store_of(tmp_path)
    client = mlflow.MlflowClient(store)
    first, second = sweep_runs(store)[0]
    assert first.data.tags["registered_model"] == "mnist-best/1" and first.data.tags["champion_promoted"] == "true"
    assert second.data.tags["registered_model"] == "mnist-best/2" and second.data.tags["champion_promoted"] == "false"
    assert second.data.tags["champion"] == "mnist-best/1"
    assert second.data.tags["champion_reason"].startswith("mnist-best v2 does not beat champion v1 (val_accuracy")
    champion = client.get_model_version_by_alias("mnist-best", "champion")
    assert str(champion.version) == "1" and champion.run_id == first.data.tags["best_run_id"]

    # predict, with its default model URI, on real test digits saved as PNGs.
    paths, labels = write_pngs(tmp_path / "pngs", 8)
    # The store by default too: ./mlruns in the launch folder, not a $MLFLOW_TRACKING_URI this process may have set.
    env = cli_env()
    out = subprocess.run(
        [sys.executable, "-m", "mnist_tracking.predict", *map(str, paths)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    printed = [int(line.rsplit(": ", 1)[1].split()[0]) for line in out.stdout.splitlines()]
    pixels = np.load(FIXTURE)["x_test"][:8]
    mlflow.set_tracking_uri(store)
    first_model = mlflow.pyfunc.load_model(f"runs:/{first.data.tags['best_run_id']}/model")
    expected = np.asarray(first_model.predict(pixels)).argmax(axis=1)
    assert printed == expected.tolist()
    assert np.mean(expected == labels) >= 0.75  # a trained model, not noise

    # The same answer over HTTP from the served champion, sent raw pixels.
    port = free_port()
    server = serve("models:/mnist-best@champion", store, port)
    try:
        wait_until_up(server, port)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": pixels.tolist()}, timeout=60)
        assert response.status_code == 200, response.text
        served = np.asarray(response.json()["predictions"])
        assert served.shape == (8, 10)
        assert served.argmax(axis=1).tolist() == printed
    finally:
        stop(server)


LOAD = """
import json, sys, keras, mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
pixels = np.load(sys.argv[3])["x_test"][:20]
print(json.dumps({"backend": keras.backend.backend(),
                  "probabilities": np.asarray(mlflow.pyfunc.load_model(sys.argv[2]).predict(pixels)).tolist()}))
"""


def test_a_model_logged_on_one_backend_loads_on_the_other(make_cfg, store):
    from mnist_tracking.train import train
    from tests.helpers import BACKEND, runs

    train(make_cfg("trainer.epochs=1"))
    [run] = runs(store)
    uri = f"runs:/{run.info.run_id}/model"
    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    pinned = Path(requirements).read_text()
    assert ("jax==" in pinned) == (BACKEND == "jax") and ("tensorflow==" in pinned) == (BACKEND == "tensorflow")
    other = "tensorflow" if BACKEND == "jax" else "jax"
    env = cli_env(KERAS_BACKEND=other)
    out = subprocess.run(
        [sys.executable, "-c", LOAD, store, uri, str(FIXTURE)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert loaded["backend"] == other
    mlflow.set_tracking_uri(store)
    here = np.asarray(mlflow.pyfunc.load_model(uri).predict(np.load(FIXTURE)["x_test"][:20]))
    np.testing.assert_allclose(np.asarray(loaded["probabilities"]), here, atol=1e-5)


def test_the_champion_serves_from_an_environment_built_from_its_own_requirements(make_cfg, store):
    """`--env-manager uv`: a fresh environment from the model's requirements.txt, nothing of this project in it
    (as `mlflow models build-docker` and deployment targets build), answers raw pixels as the run's model does."""
    from mnist_tracking.tracking.registry import promote_if_better, register_run_model
    from mnist_tracking.train import train
    from tests.helpers import runs

    train(make_cfg())
    [run] = runs(store)
    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient(store)
    promote_if_better(client, register_run_model(client, run.info.run_id, "mnist-best"), "val_accuracy", minimize=False)
    pixels = np.load(FIXTURE)["x_test"][:20]
    expected = np.asarray(mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(pixels))
    port = free_port()
    server = serve(
        "models:/mnist-best@champion",
        store,
        port,
        env_manager="uv",
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
    )
    try:
        wait_until_up(server, port, timeout_s=540)  # the first build downloads the requirements
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": pixels.tolist()}, timeout=60)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, atol=1e-5)
    finally:
        stop(server)
