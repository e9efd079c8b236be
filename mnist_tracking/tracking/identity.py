"""What identifies a job's runs and a sweep in the store, across processes and releases: the config hash, the sweep
hash, and the command and commit that run them again."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from mnist_tracking.names import COMMAND_TAG, GIT_COMMIT_TAG
from mnist_tracking.runtime.redaction import redact_text
from mnist_tracking.tracking.labels import DESCRIPTIVE_KEYS


def config_hash(cfg: DictConfig) -> str:
    """A hash of what determines a job's result: the resolved config less where and how it is tracked, and less
    what describes it (`tags`, `notes`)."""
    # A DictConfig's container is a dict (the stub's return type covers every node kind).
    container = _as_first_released(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
    for key in ("mlflow", "sweep", *DESCRIPTIVE_KEYS):
        container.pop(key, None)
    for key in ("resume", "checkpoint_every"):  # how a run is kept and continued, not what it computes
        container.get("trainer", {}).pop(key, None)
    if container.get("data", {}).get("path"):  # the same file however the path was written
        container["data"]["path"] = str(Path(container["data"]["path"]).expanduser().resolve())
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


# Hashes keep their meaning across releases, so that resume and sweep.skip_finished find the runs an earlier release
# recorded (tests/test_compat.py: a store written by the release of commit 0a59a1d). What changed since is mapped back:
_MOVED_TARGETS = {"mnist_tracking.ml.models.": "mnist_tracking.models."}  # model builders' module, then
_ADDED_DEFAULTS = {
    "data._target_": "mnist_tracking.ml.mnist.mnist",
    "callbacks": {},
}  # keys added since, as it computed


def _as_first_released(container: dict) -> dict:
    """`container` (a resolved config) as the release of commit 0a59a1d composed the same job."""
    for dotted, default in _ADDED_DEFAULTS.items():
        *parents, key = dotted.split(".")
        node = container
        for parent in parents:
            node = node.get(parent) or {}
        if key in node and node[key] == default:
            del node[key]
    target = str((container.get("model") or {}).get("_target_", ""))
    for moved, first in _MOVED_TARGETS.items():
        if target.startswith(moved):
            container["model"]["_target_"] = first + target.removeprefix(moved)
    return container


def sweep_hash(config: DictConfig) -> str:
    """A hash of what defines a sweep: its command-line overrides, its search space, and its base config.

    The same multirun command gives the same hash, so that running it again can continue the sweep, whatever
    tags and notes it gives.
    """
    excluded = set(config.hydra.job.config.override_dirname.exclude_keys)  # set by the sweep, not the user
    excluded.add("sweep.dry_run")  # a dry run plans the very sweep its command without it would run
    overrides = sorted(
        o
        for o in config.hydra.overrides.task
        if (key := o.split("=", 1)[0].lstrip("+~")) not in excluded and key.split(".")[0] not in DESCRIPTIVE_KEYS
    )
    params = {key: str(value) for key, value in (config.hydra.sweeper.get("params") or {}).items()}
    top_keys = cast(list[str], [key for key in config if key != "hydra"])  # a Hydra config's keys are strings
    base = config_hash(OmegaConf.masked_copy(config, top_keys))
    return hashlib.sha256(json.dumps([overrides, params, base], sort_keys=True).encode()).hexdigest()[:16]


def git_commit(directory: Path) -> str | None:
    """HEAD of the git checkout holding `directory`, or None outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_tags(launch_dir: Path, args: list[str], one_job: bool) -> dict[str, str]:
    """The command that runs `args` again from `launch_dir`, and the git commit there when it is a checkout.

    `one_job`: the command reruns one job of a sweep, never the whole sweep.
    """
    if one_job and any(arg.startswith(("hparams_search=", "experiment=")) for arg in args):
        args = [*args, "hydra.mode=RUN"]  # these files make a multirun: one trial again, not a whole new search
    command = f"cd {shlex.quote(str(launch_dir))} && python -m mnist_tracking.train {shlex.join(args)}".rstrip()
    tags = {COMMAND_TAG: redact_text(command)}
    commit = git_commit(launch_dir)
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags
