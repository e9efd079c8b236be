"""What a Hydra job is: its overrides and name, where it was launched and writes, its cores."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.runtime.redaction import redact_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What identifies one Hydra job: its overrides, a name built from them, where it was launched and writes."""

    overrides: list[str]
    name: str
    launch_dir: Path
    output_dir: Path  # Hydra's folder for this job (its log, .hydra/, the local checkpoint copy)
    threads: int | None  # the backend's threads for this job when a launcher runs several at once; None: all cores


def current_job() -> Job:
    """The running Hydra job (outside Hydra: no overrides, named "defaults", launched here)."""
    if not HydraConfig.initialized():
        return Job([], "defaults", Path.cwd(), Path.cwd(), None)
    hc = HydraConfig.get()
    # Keys that Hydra leaves out of the job's name (the sweep's parent run id) are left out of its command too.
    excluded = set(hc.job.config.override_dirname.exclude_keys)
    overrides = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in excluded]
    # A config composed without running it (tests, `compose`) has no output folder: the working directory stands in.
    output_dir = Path.cwd() if OmegaConf.is_missing(hc.runtime, "output_dir") else Path(hc.runtime.output_dir)
    return Job(overrides, run_name(overrides), Path(hc.runtime.cwd), output_dir, threads_per_job(hc.launcher))


# Overrides that say where and how a run is tracked or kept, not what it computes: left out of its name.
_UNNAMED = ("mlflow.", "sweep.", "hydra.", "trainer.resume=", "trainer.checkpoint_every=")


def run_name(overrides: list[str]) -> str:
    """What a run varies, for its name: its overrides sorted by key, less where and how
    it is tracked, `data.path` by file name only, secrets masked; "defaults" when that leaves nothing.

    The full overrides stay in the run's `overrides` and `command` tags.
    """
    named = []
    for override in sorted(override.lstrip("+~") for override in overrides):
        key, _, value = override.partition("=")
        if f"{key}=".startswith(_UNNAMED):
            continue
        named.append(f"{key}={Path(value).name}" if key == "data.path" and value not in ("", "null") else override)
    return redact_text(",".join(named)) or "defaults"


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
