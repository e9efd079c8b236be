"""Where runs go: the tracking URI, a reachable server or a local store, and the experiment in it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import mlflow
import requests

from mnist_tracking.errors import ConfigError
from mnist_tracking.redaction import redact_text


def resolve_tracking_uri(configured: str | None, launch_dir: Path) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else a SQLite store under <launch dir>/mlruns."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{launch_dir.resolve() / 'mlruns' / 'mlflow.db'}"


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fails fast, naming the URI, when a tracking server does not answer its health check.

    MLflow itself would retry with backoff for minutes before giving up.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ConfigError(
            f"mlflow.tracking_uri={redact_text(tracking_uri)!r} is unreachable ({type(exc).__name__}); start the "
            "tracking server, or point mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) at one that runs.") from None


def prepare_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Creates the store and the experiment at `tracking_uri` if needed; returns the experiment's id."""
    check_reachable(tracking_uri)
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep MLflow's embedded layout (database + artifact folder) together in one folder.
        store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
        store_dir.mkdir(parents=True, exist_ok=True)
        artifact_location = (store_dir / "artifacts").resolve().as_uri()
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(experiment_name, artifact_location=artifact_location)


def ui_command(tracking_uri: str) -> str:
    """The `mlflow ui` command that shows runs stored at `tracking_uri`."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {redact_text(tracking_uri)}"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"
