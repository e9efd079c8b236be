"""MLflow plumbing: where runs go, what a run is named and tagged, and how it always ends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import requests
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.checks import ConfigError
from mnist_tracking.redaction import redact, redact_text

log = logging.getLogger(__name__)

SWEEP_TAG = "sweep"  # "true" on a multirun's parent run
CONFIG_HASH_TAG = "config_hash"
RUN_FAILED_NOTE = "Recorded as FAILED in MLflow run"

# Given to MLflow so it does not infer them in a subprocess (~12 s a model on this machine).
MODEL_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("tensorflow", "keras", "mlflow", "numpy")]


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
    """Points MLflow at `tracking_uri`, creating the store and experiment if needed; returns its id."""
    check_reachable(tracking_uri)
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep MLflow's embedded layout (database + artifact folder) together in one folder.
        store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
        store_dir.mkdir(parents=True, exist_ok=True)
        artifact_location = (store_dir / "artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(experiment_name, artifact_location=artifact_location)


def flatten_config(cfg: DictConfig | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a (resolved) config under its dotted key, lists kept whole as one value."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def git_commit(directory: Path) -> str | None:
    """HEAD of the git checkout holding `directory`, or None outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass(frozen=True)
class Job:
    """What identifies one Hydra job: its overrides, a name built from them, where it was launched."""

    overrides: list[str]
    name: str
    launch_dir: Path
    threads: int | None  # TensorFlow threads for this job when a launcher runs several at once; None: all cores


def current_job() -> Job:
    """The running Hydra job (outside Hydra: no overrides, named "defaults", launched here)."""
    if not HydraConfig.initialized():
        return Job([], "defaults", Path.cwd(), None)
    hc = HydraConfig.get()
    # Keys that Hydra leaves out of the job's name (the sweep's parent run id) are left out of its command too.
    excluded = set(hc.job.config.override_dirname.exclude_keys)
    overrides = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in excluded]
    return Job(overrides, redact_text(hc.job.override_dirname) or "defaults", Path(hc.runtime.cwd),
               threads_per_job(hc.launcher))


def threads_per_job(launcher: DictConfig) -> int | None:
    """The cores one job may use when its launcher runs several jobs on one machine; None: TensorFlow decides.

    TensorFlow sizes its thread pools to the cores the process may run on. That is right for a serial
    sweep and for Slurm (which pins a job to its CPUs), but parallel jobs on one machine would each take them all.
    """
    n_jobs = launcher.get("n_jobs")  # joblib: n_jobs at once on this machine; -1 means one per core
    if n_jobs:
        parallel = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
        return max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    ray = launcher.get("ray")
    if ray is not None:  # Ray schedules one job per `num_cpus` of a node's CPUs (1 unless the launcher asks for more)
        return max(1, math.ceil(float((ray.get("remote") or {}).get("num_cpus") or 1)))
    if str(launcher.get("_target_", "")).endswith("submitit_launcher.LocalLauncher"):
        # submitit_local starts every job at once, unpinned: `cpus_per_task` is the share it can give each.
        return launcher.get("cpus_per_task")
    return None


def config_hash(cfg: DictConfig) -> str:
    """A hash of what determines a job's result: the resolved config less where and how it is tracked."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in ("mlflow", "sweep"):
        container.pop(key, None)
    if container.get("data", {}).get("path"):  # the same file however the path was written
        container["data"]["path"] = str(Path(container["data"]["path"]).expanduser().resolve())
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def source_tags(launch_dir: Path, args: list[str]) -> dict[str, str]:
    """The command that runs `args` again from `launch_dir`, and the git commit there when it is a checkout."""
    if any(arg.startswith("hparams_search=") for arg in args):
        args = [*args, "hydra.mode=RUN"]  # one trial again, not a whole new search
    command = f"cd {shlex.quote(str(launch_dir))} && python -m mnist_tracking.train {shlex.join(args)}".rstrip()
    tags = {"command": redact_text(command)}
    commit = git_commit(launch_dir)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def run_tags(job: Job, cfg: DictConfig) -> dict[str, str]:
    """Tags that say where a run came from, how to run it again, and which sweep it belongs to."""
    tags = {**source_tags(job.launch_dir, job.overrides), "overrides": json.dumps(redact(job.overrides)),
            CONFIG_HASH_TAG: config_hash(cfg)}
    if cfg.mlflow.get("parent_run_id"):
        tags["mlflow.parentRunId"] = cfg.mlflow.parent_run_id
    return tags


def find_finished_run(experiment_id: str, cfg: DictConfig) -> mlflow.entities.Run | None:
    """The latest FINISHED run in the experiment whose config hash matches `cfg`'s."""
    found = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.{CONFIG_HASH_TAG} = '{config_hash(cfg)}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


@contextlib.contextmanager
def tracked_run(experiment_id: str, name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C/SIGTERM."""
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # A plain `kill` would otherwise end the process with the run still RUNNING.
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    status = RunStatus.FINISHED
    try:
        yield run
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except BaseException as exc:
        status = RunStatus.FAILED
        exc.add_note(f"{RUN_FAILED_NOTE} {run.info.run_id}")  # tells a sweep that this failure is on record
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        log.log(logging.INFO if status == RunStatus.FINISHED else logging.ERROR,
                "MLflow run %s ended %s", run.info.run_id, RunStatus.to_string(status))
        mlflow.end_run(RunStatus.to_string(status))


def log_config(cfg: DictConfig, overrides: list[str]) -> None:
    """Logs every config leaf as a param, and the resolved config and overrides as YAML artifacts (secrets masked)."""
    container = redact(OmegaConf.to_container(cfg, resolve=True))
    mlflow.log_params(flatten_config(container))
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(container)), "config/config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(redact(list(overrides)))), "config/overrides.yaml")


def ui_command(tracking_uri: str) -> str:
    """The `mlflow ui` command that shows runs stored at `tracking_uri`."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {redact_text(tracking_uri)}"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"
