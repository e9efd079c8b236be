"""Throwaway PostgreSQL, MLflow tracking servers and Ray clusters on loopback, for the team-scale tests."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    """A PostgreSQL server program, installing Debian's postgresql package when it is missing."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed and could not be installed")
    return found[-1]


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster on a free loopback port, as the postgres user; yields a database URI."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    root.chmod(0o777)  # the postgres user owns the cluster; root runs the tests
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    try:
        subprocess.run(
            [*as_postgres, _pg_bin("initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                _pg_bin("pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_postgres, _pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*as_postgres, _pg_bin("pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def process_group(command: list[str], ready: Callable[[], bool], what: str, **popen: Any) -> Iterator[None]:
    """Runs `command` in a process group of its own until `ready()` (within 120 s), then until the block ends;
    SIGTERM to the group then, and SIGKILL to whatever is left after 15 s, pass or fail."""
    proc = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen
    )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        # `ray start --block` can hang on SIGTERM with its raylet gone: whatever is left goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=2).ok
    except requests.RequestException:
        return False


ADMIN = ("admin", "admin-password-1234")  # the basic-auth app's admin in `auth_config`


def auth_config(root: Path) -> Path:
    """A basic-auth app config (users in SQLite under `root`, READ by default, admin `ADMIN`); returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        f"admin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 300\n"  # a password hashed once per user, not once per request: tests stay quick
    )
    return path


@contextmanager
def mlflow_server(
    backend_uri: str, artifacts: Path, port: int | None = None, auth: Path | None = None
) -> Iterator[str]:
    """`mlflow server` on loopback with proxied artifacts; yields its URI once healthy, stops it at the end.

    `auth`: a basic-auth app config (`auth_config`): the server runs `--app-name basic-auth`.
    """
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    options = []
    if auth:
        options += ["--app-name", "basic-auth"]
        env |= {"MLFLOW_AUTH_CONFIG_PATH": str(auth), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only"}
    with process_group(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *options,
        ],
        lambda: _healthy(uri),
        f"mlflow server on {uri}",
        env=env,
    ):
        yield uri


def as_admin(uri: str, method: str, path: str, **body: str) -> dict:
    """Calls the basic-auth server's REST API at `path` as `ADMIN` (users, permissions, experiments)."""
    response = requests.request(method, f"{uri}{path}", json=body, auth=ADMIN, timeout=30)
    response.raise_for_status()
    return response.json() if response.text.strip() else {}


# Ray on loopback only, without a login to its API, without usage reporting, and passing on every
# line the jobs log (Ray's deduplication would fold "epoch 2/500" into "epoch 1/500 [repeated 2x]").
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}


def processes_using(directory: Path) -> list[int]:
    """Process ids whose command line names `directory` (a Ray cluster's temp dir) or that hold a file open in it.

    Ray's workers rename themselves (`ray::IDLE`), which overwrites their command line, but their
    output goes to log files in the temp dir.
    """
    prefix = str(directory)
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if prefix.encode() in (proc / "cmdline").read_bytes() or any(
                os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()
            ):
                found.append(int(proc.name))
        except OSError:  # the process ended meanwhile
            pass
    return found


def kill_processes_using(directory: Path) -> None:
    """SIGKILLs whatever `processes_using` finds."""
    for pid in processes_using(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def ray_temp_dir() -> Iterator[Path]:
    """A short temp dir for Ray's sockets; whatever Ray process still uses it at the end is killed."""
    temp = Path(tempfile.mkdtemp(prefix="ray-"))
    try:
        yield temp
    finally:
        kill_processes_using(temp)
        shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def ray_cluster(cwd: Path) -> Iterator[str]:
    """A one-node Ray cluster (`ray start --head`, 2 CPUs) on loopback, started in `cwd` with no MLflow
    variables in its environment; yields its address and stops it at the end, pass or fail."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | RAY_ENV
    with (
        ray_temp_dir() as temp,
        process_group(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--head",
                "--block",
                "--port",
                str(port),
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "2",
                "--include-dashboard=false",
                "--temp-dir",
                str(temp),
                "--disable-usage-stats",
            ],
            lambda: bool(list(temp.glob("session_*/sockets/raylet"))),  # the node is up once its raylet listens
            "ray start --head",
            cwd=cwd,
            env=env,
        ),
    ):
        yield f"127.0.0.1:{port}"
