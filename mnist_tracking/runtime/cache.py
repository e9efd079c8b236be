"""What this project keeps for later processes in the user's cache: JAX's compiled steps and an empty MLflow store."""

from __future__ import annotations

import os
from pathlib import Path


def folder() -> Path:
    """The project's folder in the user's cache: `$XDG_CACHE_HOME/mnist-tracking`, else `~/.cache/mnist-tracking`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mnist-tracking"


def jax_compilation_cache() -> Path:
    """Where JAX keeps compiled steps for a run of this process: `$JAX_COMPILATION_CACHE_DIR` if the user chose it."""
    return Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or folder() / "jax")
