"""What a user says about a run: the config's `tags` and `notes`, as the MLflow tags of its runs and sweep.

They describe a run and change nothing it computes, so the config hash leaves them out (tracking/identity.py) and
a run's params do not repeat them (tracking/inputs.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_tracking import names
from mnist_tracking.errors import ConfigError
from mnist_tracking.runtime.redaction import redact, redact_text

DESCRIPTIVE_KEYS = ("tags", "notes")  # the config's top-level keys that describe a run
MLFLOW_PREFIX = "mlflow."  # MLflow's own tags (the run name, user, source, parent, note...)


def _reserved(key: str) -> bool:
    """Whether a tag key is one this project or MLflow writes: a user tag of that name would overwrite it."""
    if key.startswith(MLFLOW_PREFIX):
        return True
    for name, value in vars(names).items():
        if name.endswith("_TAG_PREFIX") and key.startswith(value):
            return True
        if name.endswith("_TAG") and re.fullmatch(re.escape(value).replace(r"\{\}", r"\d+"), key):
            return True
    return False


def _flat(tags: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`+tags.team.name=x` nests: one tag per leaf, under its dotted key (`team.name`)."""
    flat: dict[str, Any] = {}
    for key, value in tags.items():
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _as_text(value: Any) -> str:
    """A tag value as the command line wrote it: `true`, not Python's `True`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_labels(cfg: DictConfig) -> None:
    """Raises ConfigError for a tag that would overwrite one of the project's or MLflow's, or that has no value."""
    tags = OmegaConf.to_container(cfg.tags, resolve=True) if isinstance(cfg.get("tags"), DictConfig) else {}
    for key, value in _flat(tags).items():  # type: ignore[arg-type]  # a DictConfig's container is a dict
        if _reserved(key):
            raise ConfigError(
                f"tags.{key} is reserved: the project or MLflow sets the tag {key!r} itself. "
                f"Use another name, e.g. +tags.my_{key.replace('.', '_')}=..."
            )
        if value is None or isinstance(value, (list, tuple)):
            raise ConfigError(f"tags.{key}={value!r} is invalid: use a string, number or true/false.")


def user_tags(cfg: DictConfig) -> dict[str, str]:
    """The MLflow tags that `tags` and `notes` make (checked first; secrets masked)."""
    check_labels(cfg)
    tags = _flat(OmegaConf.to_container(cfg.tags, resolve=True))  # type: ignore[arg-type]
    found = {key: _as_text(value) for key, value in redact(tags).items()}
    if cfg.notes is not None:
        found[names.NOTE_TAG] = redact_text(str(cfg.notes))
    return found
