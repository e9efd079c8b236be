"""Every speed-up that relies on another library's private or internal behaviour, or on the process's teardown,
in one place: each is guarded (if a library upgrade removes what it relies on, a warning is logged and the
public path is taken) and each can be turned off.

`MNIST_TRACKING_SPEEDUPS` (environment): unset, `1` or `all`: every speed-up on; `0` or `none`: all off. A
comma-separated list changes that, e.g. `all,-fast_exit` (all but one) or `none,figure_helper` (only one). The
metrics of a run are the same either way (tests/test_speedups.py); what each one saves is measured by
benchmarks/bench_speedups.py (docs/performance.md).
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib.abc
import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

SWITCH = "MNIST_TRACKING_SPEEDUPS"
SPEEDUPS = {
    "fast_exit": "end a successful command without the interpreter's teardown (exit handlers still run)",
    "hide_sklearn": "import Keras without scikit-learn, which it loads only for wrappers this project never uses",
    "package_index": "build MLflow's index of installed packages while the model trains, not while it is logged",
    "gc_freeze": "freeze the objects of Keras, JAX and MLflow after a process's first job of a sweep",
    "figure_helper": "render a run's figures in a forked helper process while the run goes on",
    "store_template": "create a new SQLite store as a copy of an empty one kept in the user's cache",
    "compilation_cache": "keep JAX's compiled steps in the user's cache for later processes",
}


@functools.cache
def enabled() -> frozenset[str]:
    """The speed-ups `MNIST_TRACKING_SPEEDUPS` leaves on (read once per process)."""
    words = [w.strip() for w in os.environ.get(SWITCH, "all").split(",") if w.strip()]
    on = set(SPEEDUPS) if not words or words[0] in ("1", "all") else set()
    for word in words[1 if words and words[0] in ("0", "1", "all", "none") else 0 :]:
        name = word.lstrip("+-")
        if name not in SPEEDUPS:
            log.warning("%s: unknown speed-up %r ignored; known: %s", SWITCH, name, ", ".join(SPEEDUPS))
        elif word.startswith("-"):
            on.discard(name)
        else:
            on.add(name)
    return frozenset(on)


def on(name: str) -> bool:
    """Whether speed-up `name` (a key of SPEEDUPS) is on."""
    return name in enabled()


def _fall_back(name: str) -> None:
    log.warning("Speed-up %s is unavailable with the installed libraries; going on without it", name, exc_info=True)


def import_keras() -> None:
    """Imports Keras (its backend already chosen); with `hide_sklearn`, scikit-learn looks absent meanwhile:
    Keras imports it at start-up only for its scikit-learn wrappers. Whatever imports it later gets it."""
    hidden = _Hidden("sklearn") if on("hide_sklearn") else None
    if hidden:
        sys.meta_path.insert(0, hidden)
    try:
        import keras  # noqa: F401
    except ImportError:
        if hidden is None:
            raise
        _fall_back("hide_sklearn")  # a Keras that needs scikit-learn at import: import it as it is
        sys.meta_path.remove(hidden)
        hidden = None
        import keras  # noqa: F401,F811
    finally:
        if hidden:
            sys.meta_path.remove(hidden)


class _Hidden(importlib.abc.MetaPathFinder):
    """Makes the `packages` look absent to imports while it is on `sys.meta_path`."""

    def __init__(self, *packages: str) -> None:
        self.packages = packages

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] in self.packages:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


@functools.cache
def index_installed_packages() -> threading.Thread | None:
    """With `package_index`: starts, once per process, MLflow's index of installed distributions (which
    `log_model` checks the model's requirements against) in a background thread. Call it before training; join
    the thread before logging the model. None when off."""
    if not on("package_index"):
        return None

    def index() -> None:
        try:  # MLflow's own cache of `importlib.metadata.packages_distributions()`, filled where it would fill it
            from mlflow.utils.requirements_utils import _init_modules_to_packages_map

            _init_modules_to_packages_map()
        except Exception:  # a private function: if MLflow changes it, log_model builds the index itself
            _fall_back("package_index")

    thread = threading.Thread(target=index, name="index-installed-packages", daemon=True)
    thread.start()
    return thread


def wait_for_package_index() -> None:
    """Waits for `index_installed_packages`'s thread, if it runs."""
    thread = index_installed_packages()
    if thread is not None:
        thread.join()


def collect_last_job() -> None:
    """Before a job: Keras's `clear_session` collects the last job's garbage (a sweep trains many models in one
    process). With `gc_freeze`, the process's first job freezes what exists then (every module of Keras, JAX and
    MLflow), so that later collections skip it. Once only: what a job leaves frozen is never collected."""
    import keras

    keras.backend.clear_session(free_memory=gc.get_freeze_count() > 0 or not on("gc_freeze"))
    if on("gc_freeze") and not gc.get_freeze_count():
        gc.freeze()


def exit_without_teardown() -> None:
    """With `fast_exit`, ends a successful command as Python's exit would, less the interpreter's teardown (freeing
    the objects of Keras, JAX and MLflow one by one), which the OS does at once. The exit handlers still run
    (logging's flush, MLflow's, Ray's and joblib's shutdown). Returns (a normal exit follows) when it is off,
    while a thread still runs (a normal exit waits for it), or under a profiler or debugger."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if (
        not on("fast_exit")
        or sys.getprofile()
        or sys.gettrace()
        or any(thread is not threading.main_thread() and not thread.daemon for thread in threading.enumerate())
    ):
        return
    if run_exit_handlers is None:
        log.warning("Speed-up fast_exit is unavailable with this Python; going on without it")
        return
    run_exit_handlers()  # what a normal exit runs, in the same order
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def system_metrics_monitor(tracking_uri: str, run_id: str, interval: float, resumed: bool) -> Any:
    """MLflow's system-metrics monitor for a run, started, so that its last samples are stored before the run ends
    (`start_run(log_system_metrics=True)` stops it only after). None (logged) if it cannot start: the run goes on
    without system metrics."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=interval, resume_logging=resumed, tracking_uri=tracking_uri
        )
    except Exception:
        log.exception("Could not start system metrics for run %s; the run goes on without them", run_id)
        return None
    monitor.start()
    return monitor
