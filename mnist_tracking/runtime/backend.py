"""The Keras backend of a process: chosen by the config's `backend` before Keras is first imported, and its threads.

Keras reads `KERAS_BACKEND` once, when it is first imported; a process cannot switch afterwards. So the
backend is set at the top of `train`, before anything imports Keras, and a job that asks for a different one
than its process already runs is bad input (a multirun's jobs share one process: see checks.check_sweep).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from mnist_tracking.errors import ConfigError
from mnist_tracking.runtime import cache, speedups

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax")


def current_backend() -> str | None:
    """The backend Keras runs on in this process, or None while Keras is not imported yet."""
    if "keras" not in sys.modules:
        return None
    import keras

    return keras.backend.backend()


def use_backend(name: str, threads: int | None) -> None:
    """Makes `name` (one of BACKENDS, as config.schema checks) the process's Keras backend, with `threads`
    cores for its ops (None: every core)."""
    if importlib.util.find_spec(name) is None:
        other = next(b for b in BACKENDS if b != name)
        raise ConfigError(
            f"backend={name!r} is invalid here: {name} is not installed. Install it "
            f"(pip install -e '.[{name}]'), or use backend={other}."
        )
    loaded = current_backend()
    if loaded is not None and loaded != name:
        raise ConfigError(
            f"backend={name!r} is invalid here: this process already runs Keras on {loaded!r}, and a process "
            f"cannot switch. Run it in a new process, or use backend={loaded} (the jobs of one multirun share one)."
        )
    if loaded is None:
        os.environ["KERAS_BACKEND"] = name
        if name == "jax" and speedups.on("compilation_cache"):
            _compilation_cache()
    if threads is not None:
        _limit_threads(name, threads)
    if loaded is None:
        speedups.import_keras()


def _compilation_cache() -> None:
    """JAX's persistent compilation cache, unless the user chose one: compiled steps are reused by later processes
    (and later fits) of the same model shapes, instead of compiled again (~2.5 s a run here)."""
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache.jax_compilation_cache())
    # JAX caches only compilations over 1 s by default; this project's all take less.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def _limit_threads(name: str, threads: int) -> None:
    """Gives the backend's op pools `threads` cores, so that parallel jobs share the machine instead of fighting."""
    if name == "jax":
        if "jax" in sys.modules:  # XLA reads its flags when its CPU client starts: a reused worker keeps its own
            return
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
        ).strip()
    else:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # a reused worker process whose TensorFlow is already initialized keeps its setting
            return
    log.info("Parallel jobs: %d %s threads for this one", threads, name)
