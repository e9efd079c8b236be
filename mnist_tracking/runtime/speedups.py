"""Every speed-up that relies on another library's private or internal behaviour, in one place: each is guarded (if
a library upgrade removes what it relies on, a warning is logged and the public path is taken) and each can be
turned off. Also MLflow's system-metrics monitor class, used directly (not a speed-up: no switch), guarded alike.

`MNIST_TRACKING_SPEEDUPS` (environment): unset, `1` or `all`: every speed-up on; `0` or `none`: all off. A
comma-separated list changes that, e.g. `all,-hide_sklearn` (all but one) or `none,store_template` (only one). The
metrics of a run are the same either way (tests/test_speedups.py); what each one saves is measured by
benchmarks/bench_speedups.py (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from mnist_tracking.runtime import cache

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


def empty_store_path() -> Path:
    """Where an empty store of this MLflow version is kept for the next new store: in this user's cache."""
    import mlflow

    return cache.folder() / "mlflow" / f"store-{mlflow.__version__}.db"


def copy_empty_store(copy: Path) -> bool:
    """With `store_template`, makes `copy` a copy of the empty store that an earlier command kept, if there is one
    that this MLflow opens as its own; False otherwise (nothing is left at `copy`): MLflow then builds the store by
    running its migrations, the same work for every new store. Relies on MLflow's schema: a copy it will not open
    is built again, with a warning."""
    if not on("store_template"):
        return False
    import mlflow

    try:
        shutil.copyfile(empty_store_path(), copy)
    except OSError:  # none yet (or the cache cannot be read): MLflow builds the store
        return False
    try:  # MLflow checks the schema is its own, and adds its `Default` experiment for this launch directory
        mlflow.MlflowClient(f"sqlite:///{copy}").search_experiments(max_results=1)
    except Exception:
        log.warning(
            "The cached empty store %s does not open with this MLflow; building a new one",
            empty_store_path(),
            exc_info=True,
        )
        copy.unlink(missing_ok=True)
        return False
    return True


def keep_empty_store(built: Path) -> None:
    """With `store_template`, keeps a copy of the store MLflow just built, less its `Default` experiment (whose
    artifact folder is this launch directory's), for `copy_empty_store`; a cache that cannot be written is logged
    and left. The one SQL statement on MLflow's own schema."""
    if not on("store_template"):
        return
    template = empty_store_path()
    saving = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, saving)
        with contextlib.closing(sqlite3.connect(saving)) as db, db:
            db.execute("DELETE FROM experiments")  # MLflow adds `Default` again when it opens a copy
        os.replace(saving, template)  # whole or not at all, for other commands copying it at the same time
    except (OSError, sqlite3.Error):
        log.warning("Could not keep an empty store in %s for the next new store", template.parent, exc_info=True)
        with contextlib.suppress(OSError):
            saving.unlink(missing_ok=True)
