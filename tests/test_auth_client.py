"""The client side of an authenticated tracking server: credentials from the environment or the URI reach every
launcher's jobs, a refusal says who and what before anything trains, a server that goes away while a run ends.

A wrong password, no credentials, a READ-only user and an untrusted certificate are refused against the team
server's own stack (tests/test_team_auth.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from mnist_tracking.errors import ConfigError
from mnist_tracking.runtime.redaction import redact_text
from mnist_tracking.tracking import access
from tests.helpers import FIXTURE, cli, read_until, runs
from tests.servers import RAY_ENV, as_admin, auth_config, free_port, mlflow_server, ray_temp_dir

ALICE = ("alice", "alice-secret-4321")  # EDIT on experiment mnist
BOB = ("bob", "bob-secret-8765")  # the server's default: READ
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")


def quick(uri: str, *extra: str) -> list[str]:
    return [f"data.path={FIXTURE}", "trainer.epochs=2", f"mlflow.tracking_uri={uri}", *extra]


def with_user(user: tuple[str, str] | None, **extra: str) -> dict[str, str]:
    """The command's environment: `user`'s credentials in MLflow's variables (none: no credentials at all)."""
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV} | extra
    if user:
        env |= {"MLFLOW_TRACKING_USERNAME": user[0], "MLFLOW_TRACKING_PASSWORD": user[1]}
    return env


def run_as(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """`run_cli` with exactly `env` (helpers.cli adds this process's environment to what it is given)."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [*cli_command(args, cwd)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def cli_command(args: list[str], cwd: Path) -> list[str]:
    return [sys.executable, "-m", "mnist_tracking.train", *args, f"hydra.run.dir={cwd}/outputs"]


def files_containing(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def prepare_users(uri: str) -> None:
    """alice and bob; experiment mnist, on which alice has EDIT and bob the default READ."""
    for name, password in (ALICE, BOB):
        as_admin(uri, "POST", "/api/2.0/mlflow/users/create", username=name, password=password)
    experiment_id = as_admin(uri, "POST", "/api/2.0/mlflow/experiments/create", name="mnist")["experiment_id"]
    grant = {"username": ALICE[0], "resource_type": "experiment", "resource_id": experiment_id, "permission": "EDIT"}
    as_admin(uri, "POST", "/api/3.0/mlflow/users/permissions/grant", **grant)


@contextlib.contextmanager
def auth_server(root: Path, port: int | None = None) -> Iterator[str]:
    """A basic-auth server with SQLite stores under `root` (kept across restarts on one port)."""
    fresh = not (root / "auth" / "auth.db").exists()
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", port, auth_config(root / "auth")) as uri:
        if fresh:
            prepare_users(uri)
        yield uri


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with auth_server(tmp_path_factory.mktemp("auth-server")) as uri:
        yield uri


# --- without a server ---


def test_credentials_in_the_uri_become_mlflows_variables(monkeypatch):
    for name in CREDENTIAL_ENV:  # set first, so that monkeypatch puts back (or removes) what the test sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    uri = access.adopt_credentials("https://alice:p%40ss%3Aword@mlflow.example.org:5443/prefix")
    assert uri == "https://mlflow.example.org:5443/prefix"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss:word"
    assert access.request_options()["auth"] == ("alice", "p@ss:word")
    assert "p@ss:word" not in redact_text("refused: p@ss:word")  # the password is masked wherever it shows up
    assert access.adopt_credentials("sqlite:///a@b/mlflow.db") == "sqlite:///a@b/mlflow.db"


def test_a_ca_bundle_that_is_missing_or_beside_insecure_tls_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_SERVER_CERT_PATH=.*is no file"):
        access.request_options()
    (tmp_path / "ca.pem").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    with pytest.raises(ConfigError, match="Both"):
        access.request_options()


def test_a_refused_metrics_write_is_raised_behind_any_backlog_of_done_ones():
    def done(exc: BaseException | None = None) -> Future:
        future: Future = Future()
        future.set_exception(exc) if exc else future.set_result(None)
        return future

    denied = MlflowException("Permission denied", error_code=PERMISSION_DENIED)
    pending = [done(), done(), done(denied), *(Future() for _ in range(5))]  # the last five still on their way
    with pytest.raises(MlflowException, match="Permission denied"):
        access.raise_refusal(pending)
    assert len(pending) == 6  # the two stored are dropped
    failed = [done(), done(RuntimeError("disk full")), done(denied)]
    access.raise_refusal(failed)  # another failure first: `close` raises it
    assert len(failed) == 2


# --- against a basic-auth server ---


@pytest.mark.slow
def test_a_sweep_that_would_register_into_a_model_the_user_may_not_edit_stops_first(server, tmp_path):
    as_admin(server, "POST", "/api/2.0/mlflow/registered-models/create", name="guarded-model")
    args = ["-m", f"data.path={FIXTURE}", "trainer.epochs=1", f"mlflow.tracking_uri={server}", "seed=1,2"]
    code, out = run_as([*args, "sweep.registered_model_name=guarded-model"], tmp_path, with_user(ALICE))
    assert code == 2, out
    assert "User 'alice' has READ on registered model 'guarded-model'" in out and "needs EDIT" in out
    assert "epoch 1/" not in out


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "ray"])
def test_credentials_in_the_uri_reach_every_launchers_jobs_and_no_file_or_record(server, tmp_path, launcher):
    uri = server.replace("http://", f"http://{ALICE[0]}:{ALICE[1]}@")
    args = ["-m", f"hydra/launcher={launcher}", "seed=1,2", "sweep.register_best=false"]
    args += [f"mlflow.experiment_name={launcher}"]  # created by alice: she manages it
    env = with_user(None, MLFLOW_TRACKING_URI=uri)  # from the environment: jobs get the URI through env_set
    with ray_temp_dir() as temp:
        args += {
            "joblib": ["hydra.launcher.n_jobs=2"],
            "submitit_local": [],
            "ray": ["+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false"]
            + [f"+hydra.launcher.ray.init._temp_dir={temp}"],
        }[launcher]
        proc = subprocess.run(
            [
                *cli_command([*args, f"data.path={FIXTURE}", "trainer.epochs=1"], tmp_path),
                f"hydra.sweep.dir={tmp_path}/m",
            ],
            cwd=tmp_path,
            env=env | RAY_ENV,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert ALICE[1] not in out and not files_containing(tmp_path, ALICE[1])
    with pytest.MonkeyPatch.context() as env_patch:
        env_patch.setenv("MLFLOW_TRACKING_USERNAME", ALICE[0])
        env_patch.setenv("MLFLOW_TRACKING_PASSWORD", ALICE[1])
        recorded = runs(server, launcher)
        jobs = [r for r in recorded if r.data.tags.get("sweep") != "true"]
        assert len(jobs) == 2 and all(r.info.status == "FINISHED" for r in jobs)
        for run in recorded:
            assert not [v for v in [*run.data.params.values(), *run.data.tags.values()] if ALICE[1] in v]


# --- a server that goes away ---


def wait_for_a_checkpoint(uri: str) -> None:
    """Until the one run at `uri` has a checkpoint on record (tag checkpoint_epoch), for at most a minute."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in zip(CREDENTIAL_ENV, (*ALICE, uri), strict=True):
            env.setenv(name, value)
        deadline = time.monotonic() + 60
        while not any("checkpoint_epoch" in r.data.tags for r in runs(uri)):
            assert time.monotonic() < deadline, "no checkpoint recorded within a minute"
            time.sleep(0.5)


@pytest.mark.slow
def test_a_run_whose_server_goes_away_gives_up_in_bounded_time_and_continues_when_rerun(tmp_path):
    root, port, epochs = tmp_path / "server", free_port(), 100
    env = with_user(ALICE)
    args = [f"data.path={FIXTURE}", f"trainer.epochs={epochs}", f"mlflow.tracking_uri=http://127.0.0.1:{port}"]
    args += ["mlflow.log_images_every=0"]  # metrics are what must continue; 200 images would only add time
    with auth_server(root, port) as uri:
        proc = subprocess.Popen(
            cli_command(args, tmp_path), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        try:
            seen = read_until(proc, f"epoch 3/{epochs}")
            wait_for_a_checkpoint(uri)  # what a rerun continues from
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    try:  # the server is gone; the job trains on; then it is told to stop
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        out, _ = proc.communicate(timeout=180)
        took = time.monotonic() - signalled
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    out = seen + out
    assert took <= 120, f"{took:.0f} s after SIGTERM:\n{out}"
    assert proc.returncode != 0
    assert f"http://127.0.0.1:{port}" in out and "run the same command again" in out, out

    with auth_server(root, port) as uri:
        code, out = run_as(args, tmp_path, env)
        assert code == 0, out
        with pytest.MonkeyPatch.context() as patch:
            for name, value in zip(CREDENTIAL_ENV, (*ALICE, uri), strict=True):
                patch.setenv(name, value)
            recorded = runs(uri)
            assert len(recorded) == 1, [(r.info.status, r.data.tags) for r in recorded] + [out]
            [run] = recorded
            assert run.info.status == "FINISHED"
            client = mlflow.MlflowClient(uri)
            for name in ("loss", "val_accuracy"):
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, name))
                assert steps == list(range(epochs)), name


@pytest.mark.slow
def test_a_second_sigterm_while_the_run_waits_for_a_gone_server_exits_at_once(tmp_path):
    root, port = tmp_path / "server", free_port()
    args = [f"data.path={FIXTURE}", "trainer.epochs=500", f"mlflow.tracking_uri=http://127.0.0.1:{port}"]
    with auth_server(root, port):
        proc = cli(args, tmp_path, with_user(ALICE), start_new_session=True)
        seen = read_until(proc, "epoch 2/500")
    try:
        proc.send_signal(signal.SIGTERM)
        time.sleep(5)  # the first one: the run is ending, waiting for the server
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        second = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        assert time.monotonic() - second < 10, seen + out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, seen + out
    assert "SIGTERM again" in out


@pytest.mark.slow
def test_a_permission_taken_away_mid_run_fails_the_run_with_the_reason_and_keeps_what_was_recorded(tmp_path):
    with auth_server(tmp_path / "server") as uri:
        as_admin(uri, "POST", "/api/2.0/mlflow/users/create", username="carol", password="carol-secret-1357")
        experiment_id = as_admin(uri, "POST", "/api/2.0/mlflow/experiments/create", name="shared")["experiment_id"]
        grant = {"username": "carol", "resource_type": "experiment", "resource_id": experiment_id}
        as_admin(uri, "POST", "/api/3.0/mlflow/users/permissions/grant", **grant, permission="EDIT")
        args = [
            f"data.path={FIXTURE}",
            "trainer.epochs=3000",
            f"mlflow.tracking_uri={uri}",
            "mlflow.log_images_every=0",
        ]
        proc = cli([*args, "mlflow.experiment_name=shared"], tmp_path, with_user(("carol", "carol-secret-1357")))
        try:
            seen = read_until(proc, "epoch 3/3000")
            as_admin(uri, "POST", "/api/3.0/mlflow/users/permissions/revoke", **grant)  # back to the default: READ
            out, _ = proc.communicate(timeout=300)
        finally:
            proc.kill()
        out = seen + out
        assert proc.returncode == 2, out
        assert "The server refused it" in out and "Permission denied" in out, out
        assert "could not be recorded as FAILED (it shows RUNNING)" in out and "is recorded as FAILED" not in out
        with pytest.MonkeyPatch.context() as env:
            for name, value in zip(CREDENTIAL_ENV, (*ALICE, uri), strict=True):
                env.setenv(name, value)
            client = mlflow.MlflowClient(uri)
            [run] = client.search_runs([experiment_id])  # as the admin sees it
            assert client.get_metric_history(run.info.run_id, "loss")  # what was recorded before stays
