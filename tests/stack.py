"""The authenticated team server of deploy/team-server (PostgreSQL, `mlflow server --app-name basic-auth`, nginx
with TLS) on loopback, for the tests: start it, make users and grant them, stop it, pass or fail."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from tests.helpers import ROOT
from tests.servers import _pg_bin, free_port

SCRIPT = ROOT / "deploy" / "team-server"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def nginx() -> str:
    """nginx, installing Debian's nginx-light package when it is missing (as tests.servers does PostgreSQL)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

        def install(package: str) -> bool:
            return (
                subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True, env=env).returncode
                == 0
            )

        # nginx-light where Debian has it (12), else nginx; after an `apt-get update` when neither is known yet.
        if not (install("nginx-light") or install("nginx")):
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
            install("nginx-light") or install("nginx")
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not found or not Path(found).exists():
        raise RuntimeError("nginx is not installed and could not be installed")
    return found


@dataclass
class Stack:
    """A running stack: its folder, the settings the script ran with, the admin's password."""

    dir: Path
    env: dict[str, str]
    admin_password: str
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"https://localhost:{self.env['TEAM_SERVER_PORT']}"

    @property
    def ca(self) -> Path:
        return self.dir / "tls" / "ca.pem"

    def script(self, command: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
        """`deploy/team-server COMMAND` with this stack's settings."""
        done = subprocess.run(
            [str(SCRIPT), command], env={**self.env, **extra}, capture_output=True, text=True, timeout=400
        )
        if check and done.returncode:
            logs = "".join(
                f"\n--- {log.name}\n" + log.read_text(errors="replace")[-3000:]
                for log in sorted((self.dir / "logs").glob("*.log"))
            )
            raise AssertionError(f"team-server {command}: {done.returncode}\n{done.stdout}{done.stderr}{logs}")
        return done

    def client_env(self, user: str, ca: bool = True) -> dict[str, str]:
        """What a user's shell sets to reach the stack: its URI, the user's login and the local CA."""
        password = self.admin_password if user == "admin" else self.passwords[user]
        env = {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
        return env | ({"MLFLOW_TRACKING_SERVER_CERT_PATH": str(self.ca)} if ca else {})


def stack_env(root: Path) -> dict[str, str]:
    """The script's settings for a stack in `root` on free loopback ports, with this venv's mlflow."""
    _pg_bin("initdb")  # installs PostgreSQL where it is missing
    nginx()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TEAM_SERVER_"))},
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TEAM_SERVER_DIR": str(root),
        "TEAM_SERVER_PORT": str(free_port()),
        "TEAM_SERVER_MLFLOW_PORT": str(free_port()),
        "TEAM_SERVER_PG_PORT": str(free_port()),
        "TEAM_SERVER_MLFLOW": MLFLOW,
    }


@contextmanager
def team_stack() -> Iterator[Stack]:
    """deploy/team-server started in a temp folder on loopback; stopped at the end (and its folder removed),
    pass or fail."""
    root = Path(tempfile.mkdtemp(prefix="team-"))
    root.chmod(0o711)  # the postgres user runs the database in it
    stack = Stack(root / "srv", stack_env(root / "srv"), secrets.token_urlsafe(18))
    stack.env["MLFLOW_AUTH_ADMIN_PASSWORD"] = stack.admin_password
    try:
        stack.script("start")
        yield stack
    finally:
        stack.script("stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def as_user(stack: Stack, user: str, ca: bool = True) -> Iterator[mlflow.MlflowClient]:
    """An MlflowClient logged in as `user` for the block (the environment MLflow's client reads its login from)."""
    saved = {k: os.environ.get(k) for k in stack.client_env(user, True)}
    os.environ.update(stack.client_env(user, ca))
    if not ca:
        os.environ.pop("MLFLOW_TRACKING_SERVER_CERT_PATH", None)
    try:
        yield mlflow.MlflowClient(stack.uri)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def grant_team(stack: Stack, team: str, users: list[str], experiments: list[str], model: str) -> None:
    """As the admin: the experiments and the registered model, a role `team` with EDIT on them, and `users`
    (passwords kept in `stack.passwords`) in that role."""
    from mlflow.server import get_app_client

    with as_user(stack, "admin") as client:
        auth = get_app_client("basic-auth", tracking_uri=stack.uri)
        role = auth.create_role("default", team)
        for name in experiments:
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
            auth.add_role_permission(role.id, "experiment", experiment_id, "EDIT")
        if not client.search_registered_models(f"name = '{model}'"):
            client.create_registered_model(model)
        auth.add_role_permission(role.id, "registered_model", model, "EDIT")
        for user in users:
            add_user(stack, user)
            auth.assign_role(user, role.id)


def add_user(stack: Stack, user: str) -> None:
    """As the admin: a user with a fresh password and no grant of its own."""
    from mlflow.server import get_app_client

    stack.passwords[user] = secrets.token_urlsafe(18)
    with as_user(stack, "admin"):
        get_app_client("basic-auth", tracking_uri=stack.uri).create_user(user, stack.passwords[user])
