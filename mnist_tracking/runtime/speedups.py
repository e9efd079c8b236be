"""Every speed-up that relies on another library's private or internal behaviour, or on the process's teardown,
in one place: each is guarded (if a library upgrade removes what it relies on, a warning is logged and the
public path is taken) and each can be turned off.

`MNIST_TRACKING_SPEEDUPS` (environment): unset, `1` or `all`: every speed-up on; `0` or `none`: all off. A
comma-separated list changes that, e.g. `all,-hide_sklearn` (all but one) or `none,store_template` (only one). The
metrics of a run are the same either way (tests/test_speedups.py); what each one saves is measured by
benchmarks/bench_speedups.py (docs/performance.md).
"""

from __future__ import annotations

import functools
import importlib.abc
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

SWITCH = "MNIST_TRACKING_SPEEDUPS"
SPEEDUPS = {
    "hide_sklearn": "import Keras without scikit-learn, which it loads only for wrappers this project never uses",
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
