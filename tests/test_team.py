"""Team scale: sweeps on joblib, Ray and submitit logging to a PostgreSQL-backed MLflow server, all on loopback."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.helpers import (
    FIXTURE,
    GRID,
    assert_complete_child,
    cli,
    read_until,
    run_cli,
    runs,
    signal_while_training,
    sweep_runs,
)
from tests.servers import RAY_ENV, free_port, mlflow_server, postgres, processes_using, ray_cluster, ray_temp_dir

pytestmark = pytest.mark.slow
TWO_JOBS = ["-m", "model=dense,mlp64", "trainer.epochs=1", f"data.path={FIXTURE}"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """PostgreSQL, and an MLflow server on it with proxied artifacts; both stopped at the end, pass or fail."""
    with postgres() as db, mlflow_server(db, tmp_path_factory.mktemp("artifacts")) as uri:
        yield uri


def assert_sweep_on_server(uri: str, experiment: str, jobs: int) -> None:
    """One finished parent with `jobs` complete children, its report, and a best model that predicts the fixture."""
    client = mlflow.MlflowClient(uri)
    [parent], children = sweep_runs(uri, experiment)
    assert len(children[parent.info.run_id]) == jobs == len(runs(uri, experiment)) - 1
    assert parent.info.status == "FINISHED"
    for child in children[parent.info.run_id]:
        assert_complete_child(client, child)
        assert "mlflow." not in child.info.run_name and "model=" in child.info.run_name  # what varies, not where
    assert {"sweep/summary.csv", "sweep/val_accuracy.png", "sweep/val_loss.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "sweep")
    }

    mlflow.set_tracking_uri(uri)
    best = parent.data.tags["best_run_id"]
    model = mlflow.pyfunc.load_model(f"runs:/{best}/model")
    pixels = np.load(FIXTURE)["x_test"][:50]  # raw, as the logged model takes them
    assert np.asarray(model.predict(pixels)).shape == (50, 10)


def test_joblib_sweep_against_a_postgres_backed_server(server, tmp_path):
    code, out = run_cli(
        [
            *GRID,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"mlflow.tracking_uri={server}",
            "mlflow.experiment_name=joblib",
        ],
        tmp_path,
    )
    assert code == 0, out
    assert not (tmp_path / "mlruns").exists()  # nothing went to the local default store
    assert_sweep_on_server(server, "joblib", 4)


def test_local_ray_sweep(server, tmp_path):
    """hydra/launcher=ray starts a local Ray (2 CPUs) for the sweep and stops it when the sweep ends."""
    with ray_temp_dir() as temp:
        code, out = run_cli(
            [
                *TWO_JOBS,
                "hydra/launcher=ray",
                "+hydra.launcher.ray.init.num_cpus=2",
                "+hydra.launcher.ray.init.include_dashboard=false",
                f"+hydra.launcher.ray.init._temp_dir={temp}",
                f"mlflow.tracking_uri={server}",
                "mlflow.experiment_name=ray",
            ],
            tmp_path,
            env=RAY_ENV,
        )
        assert code == 0, out
        assert "Started a local Ray instance" in out
        assert processes_using(temp) == []  # the launcher's Ray went down with the sweep
    assert not (tmp_path / "mlruns").exists()
    assert_sweep_on_server(server, "ray", 2)


@pytest.mark.parametrize(
    ("sig", "parent_status", "job_statuses"),
    [(signal.SIGINT, "KILLED", {"KILLED"}), (signal.SIGTERM, "FAILED", {"FAILED", "KILLED"})],
    ids=["ctrl-c", "sigterm"],
)
def test_stopping_a_local_ray_sweep_ends_every_run(sig, parent_status, job_statuses, tmp_path):
    """Ctrl-C: every run KILLED. SIGTERM: Ray's own handler ends the submitter and the exit hook ends the parent
    FAILED; a job run ends FAILED (that hook) or KILLED (the job's own handler, as Ray stops it), whichever is first."""
    with ray_temp_dir() as temp:
        code, out = signal_while_training(
            [
                "-m",
                "model=dense,mlp64",
                f"data.path={FIXTURE}",
                "hydra/launcher=ray",
                "+hydra.launcher.ray.init.num_cpus=2",
                "+hydra.launcher.ray.init.include_dashboard=false",
                f"+hydra.launcher.ray.init._temp_dir={temp}",
            ],
            tmp_path,
            sig,
            RAY_ENV,
            jobs=2,
        )
        assert code != 0, out
        assert processes_using(temp) == []
    parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    [parent] = parents
    [jobs] = children.values()
    assert parent.info.status == parent_status, out
    assert len(jobs) == 2 and {r.info.status for r in jobs} <= job_statuses, out  # none left RUNNING


def test_sweep_on_an_existing_ray_cluster(server, tmp_path):
    """hydra/launcher=ray_cluster joins a running cluster whose workers have neither the submitting shell's
    environment nor its working directory: the tracking URI comes from the shell's MLFLOW_TRACKING_URI
    through the jobs' config, and the jobs' outputs still land in the launch directory."""
    elsewhere = tmp_path / "cluster"
    launch = tmp_path / "launch"
    elsewhere.mkdir()
    launch.mkdir()
    with ray_cluster(elsewhere) as address:
        code, out = run_cli(
            [
                *TWO_JOBS,
                "hydra/launcher=ray_cluster",
                f"hydra.launcher.ray.init.address={address}",
                "mlflow.experiment_name=ray_cluster",
            ],
            launch,
            env={**RAY_ENV, "MLFLOW_TRACKING_URI": server},
            dirs=False,
        )
    assert code == 0, out
    assert f"Connecting to existing Ray cluster at address: {address}" in out
    assert not (launch / "mlruns").exists() and not (elsewhere / "mlruns").exists()
    assert len(list(launch.glob("multirun/*/*/[01]/.hydra/config.yaml"))) == 2
    assert_sweep_on_server(server, "ray_cluster", 2)


def test_submitit_local_sweep(server, tmp_path):
    code, out = run_cli(
        [
            *TWO_JOBS,
            "hydra/launcher=submitit_local",
            f"mlflow.tracking_uri={server}",
            "mlflow.experiment_name=submitit",
        ],
        tmp_path,
    )
    assert code == 0, out
    assert "Submitit 'local' sweep output dir" in out
    assert not (tmp_path / "mlruns").exists()
    assert_sweep_on_server(server, "submitit", 2)


def test_a_run_survives_a_server_restart(tmp_path):
    """The server goes down mid-training and comes back on the same port: every epoch is recorded."""
    epochs = 200
    with postgres() as db:
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        with mlflow_server(db, tmp_path / "artifacts", port):
            # Images every 50 epochs: some through the restart, not 400 of them (tests/test_epoch_images.py has more).
            args = [f"data.path={FIXTURE}", f"trainer.epochs={epochs}", "mlflow.log_images_every=50"]
            proc = cli([*args, f"mlflow.tracking_uri={uri}"], tmp_path)
            read_until(proc, f"epoch 5/{epochs}")
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


def test_a_run_stopped_against_the_server_resumes_from_the_servers_checkpoint(server, tmp_path):
    args = [
        f"data.path={FIXTURE}",
        "trainer.epochs=60",
        f"mlflow.tracking_uri={server}",
        "mlflow.experiment_name=resume",
    ]
    proc = cli(args, tmp_path)
    read_until(proc, "epoch 4/60")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    [stopped] = runs(server, "resume")
    assert stopped.info.status == "KILLED" and "checkpoint_epoch" in stopped.data.tags
    Path(stopped.data.tags["checkpoint_local_copy"].split(":", 1)[1]).unlink()  # only the server's copy is left

    code, out = run_cli(args, tmp_path)
    assert code == 0, out
    [run] = runs(server, "resume")
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert f"Resuming run {run.info.run_id} from epoch {int(stopped.data.tags['checkpoint_epoch']) + 1}" in out
    client = mlflow.MlflowClient(server)
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss")) == list(range(60))
