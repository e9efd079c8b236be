"""Where runs go: the tracking URI, a reachable server or a local store, and the experiment in it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import requests
from mlflow.exceptions import MlflowException

from mnist_tracking.errors import ConfigError
from mnist_tracking.runtime import speedups
from mnist_tracking.runtime.redaction import redact_text
from mnist_tracking.tracking import access

log = logging.getLogger(__name__)


def resolve_tracking_uri(configured: str | None, launch_dir: Path) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else a SQLite store under <launch dir>/mlruns.

    A server's URI comes back without user info: a user and password in it become this process's credentials
    (`access.adopt_credentials`).
    """
    if configured:
        return access.adopt_credentials(configured)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return access.adopt_credentials(os.environ["MLFLOW_TRACKING_URI"])
    return f"sqlite:///{launch_dir.resolve() / 'mlruns' / 'mlflow.db'}"


# What a proxy in front of a tracking server (the team server's nginx) answers while the server restarts.
RESTARTING = (502, 503, 504)


def check_reachable(tracking_uri: str, timeout_s: float = 10.0, restarting_s: float = 60.0) -> None:
    """Fails fast, naming the URI, when a tracking server does not answer its health check.

    MLflow itself would retry with backoff for minutes before giving up. A proxy whose server is restarting
    (`RESTARTING`) is asked again every few seconds for up to `restarting_s`. An `https://` server's certificate
    is checked as MLflow checks it (`access.request_options`); one that is refused says which CA to set.
    """
    if not access.is_server(tracking_uri):
        return
    deadline = time.monotonic() + restarting_s
    try:
        while (response := access.get(tracking_uri, "/health", timeout_s)).status_code in RESTARTING:
            if time.monotonic() >= deadline:
                break
            log.info(
                "The tracking server %s is restarting (HTTP %d): asking again",
                redact_text(tracking_uri),
                response.status_code,
            )
            time.sleep(min(2.0, restarting_s / 10))
        response.raise_for_status()
    except requests.exceptions.SSLError as exc:
        raise access.tls_failure(tracking_uri, exc) from None
    except requests.RequestException as exc:
        raise ConfigError(
            f"mlflow.tracking_uri={redact_text(tracking_uri)!r} is unreachable ({type(exc).__name__}); start the "
            "tracking server, or point mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) at one that runs."
        ) from None


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a SQLite tracking URI; None for any other store."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def _lock_path(tracking_uri: str) -> Path:
    """Beside a SQLite database; for a server, a file named after its URI in this machine's temp folder."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        return database.with_name(database.name + ".lock")
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mnist-tracking-{digest}.lock"


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Holds this machine's exclusive lock on the store at `tracking_uri` for the block.

    Creating the store or an experiment, and claiming a run to resume, happen under it. An flock: the
    kernel releases it when its holder's process ends, however it ends, so a killed command never
    leaves the next one waiting.
    """
    with open(_lock_path(tracking_uri), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for another command's lock on the store (%s)", lock.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _create_sqlite_store(database: Path) -> None:
    """Creates an empty MLflow store at `database` whole, or not at all (call under `store_lock`).

    MLflow creates a store by migrating its schema step by step. Two commands doing that to one file
    race (`duplicate column name`), and one killed halfway leaves a broken file. So the store is built
    under a temporary name and renamed into place: a database at that path is always complete. Built once per
    MLflow version and user with the `store_template` speed-up: later stores are copies of the first
    (`speedups.copy_empty_store`).
    """
    for leftover in database.parent.glob(f".{database.name}.*.tmp"):  # from a command killed while creating
        leftover.unlink()
    copy = database.with_name(f".{database.name}.{os.getpid()}.copy.tmp")
    if speedups.copy_empty_store(copy):
        os.replace(copy, database)
        return
    building = database.with_name(f".{database.name}.{os.getpid()}.tmp")  # not `copy`: MLflow keeps its connections
    mlflow.MlflowClient(f"sqlite:///{building}").search_experiments(max_results=1)  # MLflow migrates on first use
    speedups.keep_empty_store(building)
    os.replace(building, database)


def prepare_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Creates the store and the experiment at `tracking_uri` if needed; returns the experiment's id.

    Safe when several commands (single runs, sweeps, a sweep's parallel jobs) do this at once. On a server with
    MLflow's auth app: ConfigError unless the user signs in and may create runs in the experiment (EDIT).
    """
    check_reachable(tracking_uri)
    user = access.authenticate(tracking_uri)
    try:
        experiment_id = _experiment_id(tracking_uri, experiment_name)
    except MlflowException as exc:
        if exc.get_http_status_code() != 403:
            raise
        raise ConfigError(
            f"User {(user or {}).get('username')!r} may not read experiment {experiment_name!r} at "
            f"{redact_text(tracking_uri)}; this command needs EDIT on it. Ask its owner or the server's admin."
        ) from None
    access.require_write(
        tracking_uri,
        user,
        "experiment",
        experiment_id,
        experiment_name,
        "use another experiment (mlflow.experiment_name)",
    )
    return experiment_id


def _experiment_id(tracking_uri: str, experiment_name: str) -> str:
    """The id of the experiment, which this creates (and the store) if needed."""
    artifact_location = None
    database = sqlite_path(tracking_uri)
    if database is not None:
        # Keep MLflow's embedded layout (database + artifact folder) together in one folder.
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "artifacts").resolve().as_uri()
        if not database.exists():
            with store_lock(tracking_uri):
                if not database.exists():
                    _create_sqlite_store(database)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    with store_lock(tracking_uri):
        experiment = client.get_experiment_by_name(experiment_name)  # another command may have just made it
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(experiment_name, artifact_location=artifact_location)
        except MlflowException as exc:  # a server's other client won the race: the name is unique
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(experiment_name)
            assert experiment is not None, "the experiment whose creation lost the race exists"
            return experiment.experiment_id


def open_experiment(configured_uri: str | None, experiment_name: str, launch_dir: Path) -> tuple[str, str]:
    """The tracking URI a job logs to (see `resolve_tracking_uri`) and its experiment's id, both created if needed."""
    tracking_uri = resolve_tracking_uri(configured_uri, launch_dir)
    return tracking_uri, prepare_experiment(tracking_uri, experiment_name)


def existing_store(tracking_uri: str) -> mlflow.MlflowClient:
    """A client for a store that must exist already (for reading); ConfigError names the URI otherwise."""
    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        raise ConfigError(
            f"No MLflow store at {tracking_uri}: nothing to read there. Run a job from this folder "
            "first, or give the store with --tracking-uri (or $MLFLOW_TRACKING_URI)."
        )
    check_reachable(tracking_uri)
    access.authenticate(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def store_exists(tracking_uri: str) -> bool:
    """Whether a store is at `tracking_uri` already (a server: whether it answers, else ConfigError); creates
    nothing, which a client would (MLflow builds a missing local store as it opens it)."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        return database.is_file()
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):  # a file store: a folder
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:")).is_dir()
    check_reachable(tracking_uri)
    return True


def ui_command(tracking_uri: str) -> str:
    """The `mlflow ui` command that shows runs stored at `tracking_uri`."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {redact_text(tracking_uri)}"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"
