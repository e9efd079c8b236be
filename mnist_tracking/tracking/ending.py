"""A run's end, bounded: when the tracking server stops answering while a run ends, or a stop signal came, the
command gives up within two minutes instead of retrying for as long as MLflow would; a second signal ends it at once.

While training, nothing changes: the epochs' metrics wait on their own thread for the server to come back (MLflow
retries each request, $MLFLOW_HTTP_REQUEST_MAX_RETRIES). From the moment the run starts ending (`guard`, `arm`) until
it has ended (`disarm`), a watcher asks the server's /health every few seconds. It gives up when the server has not
answered for GIVE_UP_S, or AFTER_SIGNAL_S after a stop signal: it logs why, naming the server, and ends the process
(exit 1). The run then stays RUNNING with its owner gone, which the same command, run again, continues from its last
recorded checkpoint (docs/guides/resume.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from mnist_tracking.runtime.redaction import redact_text
from mnist_tracking.tracking import access

log = logging.getLogger(__name__)

GIVE_UP_S = 60.0  # the server silent this long while a run ends: give up
AFTER_SIGNAL_S = 90.0  # a run ending after a stop signal: give up this long after it, server or not
POLL_S = 5.0  # between two health checks, and the longest one waits


class _Watcher(threading.Thread):
    """Asks the server's /health every POLL_S while a run ends; ends the process when it should give up."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        super().__init__(name="run-ending-watch", daemon=True)
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.signalled_at: float | None = None
        self.stopped = threading.Event()

    def _answers(self) -> bool:
        if not access.is_server(self.tracking_uri):
            return True  # a local store: nothing to wait for
        try:
            return access.get(self.tracking_uri, "/health", POLL_S).ok
        except requests.RequestException:
            return False

    def run(self) -> None:
        answered = time.monotonic()
        while not self.stopped.wait(POLL_S):
            now = time.monotonic()
            if self._answers():
                answered = now
            elif now - answered >= GIVE_UP_S:
                give_up(f"The tracking server {redact_text(self.tracking_uri)} has not answered for {GIVE_UP_S:.0f} s")
            if self.signalled_at is not None and now - self.signalled_at >= AFTER_SIGNAL_S:
                give_up(
                    f"Run {self.run_id} did not end within {AFTER_SIGNAL_S:.0f} s of the stop signal; the tracking "
                    f"server {redact_text(self.tracking_uri)} answers too slowly"
                )


_watcher: _Watcher | None = None
_previous: dict[int, Any] = {}  # the signal handlers `arm` replaced


def give_up(reason: str, code: int = 1) -> None:
    """Logs why the command stops without ending its run, and ends the process at once."""
    watcher = _watcher
    run = watcher.run_id if watcher else "?"
    log.error(
        "%s: stopping without ending run %s. What the server has not recorded is kept only in this job's local "
        "checkpoint copy; run the same command again once the server answers, and it continues run %s from its "
        "last recorded checkpoint (with none recorded, it trains the job anew).",
        reason,
        run,
        run,
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(code)


def _on_signal(signum: int, frame: object) -> None:
    """While a run ends: the first stop signal starts AFTER_SIGNAL_S; a second one ends the process at once."""
    watcher = _watcher
    if watcher is None:
        raise KeyboardInterrupt
    if watcher.signalled_at is not None:
        give_up(f"{signal.Signals(signum).name} again while run {watcher.run_id} was ending", 128 + signum)
    watcher.signalled_at = time.monotonic()
    raise KeyboardInterrupt


def arm(tracking_uri: str, run_id: str, signalled: bool = False) -> None:
    """From now until `disarm`: the run's end is bounded (see the module). `signalled`: a stop signal has come.
    Called again, it keeps the watcher it started and re-installs its signal handlers (main thread only)."""
    global _watcher
    if _watcher is None:
        _watcher = _Watcher(tracking_uri, run_id)
        _watcher.start()
    if signalled and _watcher.signalled_at is None:
        _watcher.signalled_at = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not _on_signal:
                _previous[sig] = signal.signal(sig, _on_signal)


def disarm() -> None:
    """The run has ended: no more watching; the signal handlers `arm` replaced come back."""
    global _watcher
    if _watcher is not None:
        _watcher.stopped.set()
        _watcher = None
    if threading.current_thread() is threading.main_thread():
        for sig, handler in _previous.items():
            signal.signal(sig, handler)
    _previous.clear()


@contextlib.contextmanager
def guard(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Around a fit: when the block ends, however it ends, the run's end is bounded (`arm`); a KeyboardInterrupt
    (Ctrl-C, SIGTERM) counts as the stop signal."""
    try:
        yield
    except KeyboardInterrupt:
        arm(tracking_uri, run_id, signalled=True)
        raise
    except BaseException:
        arm(tracking_uri, run_id)
        raise
    arm(tracking_uri, run_id)
