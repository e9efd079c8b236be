"""The authenticated team server (deploy/team-server: PostgreSQL, MLflow's basic-auth app, nginx with TLS) on
loopback: a team's user runs and sweeps over TLS, only the model's team moves its champion, a client without the CA
is refused, a wrong password, no credentials or READ alone stop a command before training, and four commands of two
users at once, with a server restart among them, lose nothing."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
import requests

from mnist_tracking import names
from tests.docs import ROOT, tagged
from tests.helpers import FIXTURE, assert_complete_child, cli, run_cli, runs, sweep_runs
from tests.stack import Stack, add_user, as_user, grant_team, stack_env, team_stack
from tests.test_team import assert_sweep_on_server

# The tests that share the module's stack run on one test process (`--dist loadgroup`), first (tests/conftest.py).
pytestmark = pytest.mark.slow
SHARED = pytest.mark.xdist_group("team-stack")
MODEL = "mnist-best"  # conf/sweep/default.yaml: sweep.registered_model_name
ONE_EPOCH = ["trainer.epochs=1", f"data.path={FIXTURE}"]


@pytest.fixture(scope="module")
def stack():
    """The stack, with alice and bob in the team that may edit experiments `mnist`, `sweep` and `load` and the
    registered model, and carol, who has no grant (the server's default: READ)."""
    with team_stack() as stack:
        grant_team(stack, "mnist-team", ["alice", "bob"], ["mnist", "sweep", "load"], MODEL)
        add_user(stack, "carol")
        yield stack


@pytest.fixture(scope="module")
def load(stack, tmp_path_factory) -> list[tuple[int, str]]:
    """Four commands of two users at once, over TLS: alice's joblib sweep of 6 one-epoch jobs (2 workers, experiment
    `sweep`) and her single run (`mnist`), bob's same sweep and run (`load`). The MLflow server (only it) restarts
    once the first job has finished. Each command's exit status and output."""
    sweep = ["-m", "model=dense,mlp64", "seed=1,2,3", *ONE_EPOCH, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    plan = [
        ("alice", [*sweep, "mlflow.experiment_name=sweep"]),
        ("bob", [*sweep, "mlflow.experiment_name=load"]),
        ("alice", ONE_EPOCH),
        ("bob", [*ONE_EPOCH, "mlflow.experiment_name=load"]),
    ]
    root = tmp_path_factory.mktemp("load")
    commands = []
    for i, (user, args) in enumerate(plan):
        (root / str(i)).mkdir()
        commands.append(cli(args, root / str(i), env=stack.client_env(user)))
    with ThreadPoolExecutor(len(commands)) as pool:  # each command's output read as it comes: none blocks
        outputs = pool.map(finish, commands)
        try:
            with as_user(stack, "admin"):
                deadline = time.monotonic() + 600
                while not any(r.info.status == "FINISHED" for name in ("sweep", "load") for r in runs(stack.uri, name)):
                    assert time.monotonic() < deadline and all(p.poll() is None for p in commands[:2])
                    time.sleep(2)
            stack.script("restart-mlflow")
        except BaseException:
            for proc in commands:
                proc.kill()
            raise
        outputs = list(outputs)
    return [(proc.returncode, out) for proc, out in zip(commands, outputs, strict=True)]


@SHARED
def test_a_team_user_runs_and_sweeps_over_tls(stack, load):
    """alice's run, and her 2-worker joblib sweep, whose best model is registered; no record holds her password."""
    assert [code for code, _ in load] == [0] * 4, "\n\n".join(out for _, out in load)
    with as_user(stack, "admin") as client:
        [run] = runs(stack.uri, "mnist")
        assert_complete_child(client, run)
        assert_sweep_on_server(stack.uri, "sweep", 6)
        [parent], _ = sweep_runs(stack.uri, "sweep")
        name, number = parent.data.tags[names.REGISTERED_MODEL_TAG].split("/")
        assert name == MODEL and client.get_model_version(MODEL, number).run_id == parent.data.tags["best_run_id"]
        assert client.get_model_version_by_alias(MODEL, names.CHAMPION_ALIAS)  # one of the two sweeps' versions
        password = stack.passwords["alice"]
        for recorded in [run, *runs(stack.uri, "sweep")]:
            assert password not in json.dumps([recorded.data.params, recorded.data.tags])


@SHARED
def test_two_users_four_commands_at_once_and_a_restart_lose_nothing(stack, load):
    assert [code for code, _ in load] == [0] * 4, "\n\n".join(out for _, out in load)
    with as_user(stack, "admin") as client:
        for experiment in ("sweep", "load"):
            [parent], children = sweep_runs(stack.uri, experiment)
            assert parent.info.status == "FINISHED" and len(children[parent.info.run_id]) == 6
            for job in children[parent.info.run_id]:
                assert_complete_child(client, job)
        singles = [r for r in runs(stack.uri, "load") if r.data.tags.get("sweep") != "true"]
        singles = [r for r in singles if "mlflow.parentRunId" not in r.data.tags] + runs(stack.uri, "mnist")
        assert len(singles) == 2
        for run in singles:
            assert_complete_child(client, run)


@SHARED
def test_only_the_models_team_moves_its_champion(stack, load):
    with as_user(stack, "admin") as client:
        champion = client.get_model_version_by_alias(MODEL, names.CHAMPION_ALIAS).version
    with as_user(stack, "carol") as client:
        assert client.get_model_version_by_alias(MODEL, names.CHAMPION_ALIAS).version == champion  # READ
        for move in (
            lambda: client.set_registered_model_alias(MODEL, names.CHAMPION_ALIAS, champion),
            lambda: client.delete_registered_model_alias(MODEL, names.CHAMPION_ALIAS),
        ):
            with pytest.raises(mlflow.MlflowException) as refused:
                move()
            assert refused.value.get_http_status_code() == 403
        experiment_id = client.get_experiment_by_name("sweep").experiment_id
        with pytest.raises(mlflow.MlflowException) as refused:
            client.create_run(experiment_id)  # nor logs to the team's experiment
        assert refused.value.get_http_status_code() == 403
    with as_user(stack, "bob") as client:
        client.set_registered_model_alias(MODEL, names.CHAMPION_ALIAS, champion)  # in the model's team
    response = requests.post(
        f"{stack.uri}/api/2.0/mlflow/registered-models/alias",
        json={"name": MODEL, "alias": names.CHAMPION_ALIAS, "version": champion},
        auth=("carol", "not her password"),
        verify=stack.ca,
        timeout=30,
    )
    assert response.status_code == 401


@SHARED
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("a wrong password", "refused user 'alice' (HTTP 401)"),
        ("no credentials", "needs a user and password"),
        ("carol, who may only read", "User 'carol' has READ on experiment 'mnist' at {uri}; this command needs EDIT"),
    ],
)
def test_who_may_not_record_is_stopped_before_training(stack, tmp_path, who, expected):
    env = stack.client_env("carol" if who.startswith("carol") else "alice")
    wrong = "wrong-Pa55word-" + secrets.token_hex(4)
    if who == "a wrong password":
        env["MLFLOW_TRACKING_PASSWORD"] = wrong
    if who == "no credentials":
        del env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]
    code, out = run_cli(ONE_EPOCH, tmp_path, env=env)
    assert code == 2, out
    assert expected.format(uri=stack.uri) in out and stack.uri in out, out
    assert "epoch 1/" not in out and "Traceback" not in out
    assert wrong not in out and all(password not in out for password in stack.passwords.values())
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and wrong.encode() in p.read_bytes()]  # logs, .hydra


@SHARED
def test_a_server_whose_certificate_the_client_does_not_trust_is_refused(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's client would retry for minutes
    code, out = run_cli(ONE_EPOCH, tmp_path, env=stack.client_env("alice", ca=False))
    assert code == 2, out
    assert f"The certificate of the tracking server {stack.uri} is not signed by the system's CAs" in out, out
    assert "Set MLFLOW_TRACKING_SERVER_CERT_PATH" in out
    assert "epoch 1/1" not in out
    with as_user(stack, "alice", ca=False) as client, pytest.raises(mlflow.MlflowException, match="SSL"):
        client.search_experiments()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{stack.uri}/health", timeout=30)
    assert requests.get(f"{stack.uri}/health", verify=stack.ca, timeout=30).ok


def finish(proc: subprocess.Popen) -> str:
    """The command's whole output once it ends (killed after 15 minutes)."""
    try:
        return proc.communicate(timeout=900)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] + "\n(killed after 15 minutes)"


def test_the_auth_page_runs_as_written():
    """docs/team/auth.md's commands, in order, as root from a copy of the repository's root, with the tests' folder
    and ports; its real certificate is one a test CA signs for mlflow.example.org."""
    blocks = tagged("team-auth")
    assert len(blocks) == 6
    tmp_path = Path(tempfile.mkdtemp(prefix="team-doc-"))  # pytest's is closed to the postgres user
    tmp_path.chmod(0o711)  # the postgres user runs the database in it
    srv, work = tmp_path / "srv", tmp_path / "work"
    work.mkdir()
    for name in ("deploy", "tests"):
        (work / name).symlink_to(ROOT / name)
    env = stack_env(srv) | {"MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18)}
    port = env["TEAM_SERVER_PORT"]
    real = real_certificate(tmp_path / "le", "mlflow.example.org")
    replace = {
        "/srv/mlflow-team": str(srv),
        "localhost:8443": f"localhost:{port}",
        "/etc/letsencrypt/live/mlflow.example.org": str(tmp_path / "le"),
        "TEAM_SERVER_LISTEN=0.0.0.0": "TEAM_SERVER_LISTEN=127.0.0.1",  # loopback, in a test
    }

    def run(block) -> subprocess.CompletedProcess:
        code = block.code
        for old, new in replace.items():
            code = code.replace(old, new)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        return done

    try:
        start, admin, permission, client, certificate, stop = blocks
        assert "postgresql: running" in run(start).stderr
        passwords = dict(line.split() for line in run(admin).stdout.splitlines())
        assert set(passwords) == {"alice", "bob"}
        assert json.loads(run(permission).stdout) == {"allowed": True, "permission": "EDIT"}
        replace["the password the admin handed over"] = passwords["alice"]
        run(client)
        stack = Stack(srv, env, env["MLFLOW_AUTH_ADMIN_PASSWORD"], passwords)
        with as_user(stack, "admin"):
            [run_] = runs(stack.uri, "mnist")
            assert run_.info.status == "FINISHED"
        run(certificate)
        health = f"https://mlflow.example.org:{port}/health"
        assert requests.get(health.replace("mlflow.example.org", "127.0.0.1"), verify=False, timeout=30).ok
        curl = ["curl", "-fsS", "--resolve", f"mlflow.example.org:{port}:127.0.0.1", health]
        assert subprocess.run([*curl, "--cacert", str(real)], capture_output=True, text=True).stdout == "OK"
        assert subprocess.run([*curl, "--cacert", str(stack.ca)], capture_output=True).returncode == 60  # not trusted
        run(stop)
        assert (
            "postgresql: stopped"
            in subprocess.run(
                [str(ROOT / "deploy" / "team-server"), "status"], env=env, capture_output=True, text=True
            ).stderr
        )
    finally:
        subprocess.run([str(ROOT / "deploy" / "team-server"), "stop"], env=env, capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)


def real_certificate(folder: Path, name: str) -> Path:
    """fullchain.pem and privkey.pem for `name` in `folder`, as Let's Encrypt lays them out, signed by a CA of the
    test's own; returns that CA's certificate."""
    folder.mkdir()
    ca, key = folder / "test-ca.pem", folder / "test-ca.key"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=test CA",
        "-keyout",
        str(key),
        "-out",
        str(ca),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(folder / "privkey.pem"),
        "-out",
        str(folder / "request.csr"),
    )
    (folder / "ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(folder / "request.csr"),
        "-CA",
        str(ca),
        "-CAkey",
        str(key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(folder / "ext"),
        "-out",
        str(folder / "fullchain.pem"),
    )
    return ca
