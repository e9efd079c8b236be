"""Team scale: sweeps logging to an MLflow tracking server backed by PostgreSQL, all on loopback."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pytest

from tests.conftest import FIXTURE
from tests.servers import free_port, mlflow_server, postgres
from tests.test_cli import cli, run_cli
from tests.test_sweep import GRID, assert_complete_child

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """PostgreSQL, and an MLflow server on it with proxied artifacts; both stopped at the end, pass or fail."""
    with postgres() as db, mlflow_server(db, tmp_path_factory.mktemp("artifacts")) as uri:
        yield uri


def test_joblib_sweep_against_a_postgres_backed_server(server, tmp_path):
    code, out = run_cli([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"mlflow.tracking_uri={server}"],
                        tmp_path)
    assert code == 0, out
    assert not (tmp_path / "mlruns").exists()  # nothing went to the local default store
    client = mlflow.MlflowClient(server)
    experiment = client.get_experiment_by_name("mnist")
    everything = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in everything if r.data.tags.get("sweep") == "true"]
    children = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and parent.info.status == "FINISHED"
    for child in children:
        assert_complete_child(client, child)
    assert {"sweep/summary.csv", "sweep/val_accuracy.png", "sweep/val_loss.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}

    mlflow.set_tracking_uri(server)
    best = parent.data.tags["best_run_id"]
    model = mlflow.pyfunc.load_model(f"runs:/{best}/model")
    images = (np.load(FIXTURE)["x_test"][:50].astype(np.float32) / 255.0 - 0.1307) / 0.3081
    assert np.asarray(model.predict(images)).shape == (50, 10)


def test_a_run_survives_a_server_restart(tmp_path):
    """The server goes down mid-training and comes back on the same port: every epoch is recorded."""
    epochs = 200
    with postgres() as db:
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        with mlflow_server(db, tmp_path / "artifacts", port):
            proc = cli([f"data.path={FIXTURE}", f"trainer.epochs={epochs}", f"mlflow.tracking_uri={uri}"], tmp_path)
            for line in proc.stdout:
                if f"epoch 5/{epochs}" in line:
                    break
        down = time.monotonic()  # the server is stopped here; the job keeps training and queueing metrics
        time.sleep(5)
        with mlflow_server(db, tmp_path / "artifacts", port):
            assert time.monotonic() - down < 60
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out
            client = mlflow.MlflowClient(uri)
            [run] = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
            assert run.info.status == "FINISHED"
            for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
                assert len(client.get_metric_history(run.info.run_id, name)) == epochs, name
