"""A run's figures rendered to PNG in a helper process while the run goes on, then stored with it before it ends.

Matplotlib renders under the GIL, 0.15-0.3 s a figure here, so three figures rendered in the training process were
most of a run's end, and threads could not overlap them. A forkserver, started with the first run and holding
Matplotlib already imported, forks a helper for each run at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import posixpath
import shutil
import signal
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mnist_tracking.runtime import speedups

if TYPE_CHECKING:  # not imported: the helper imports this module, and needs neither
    import mlflow
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# What the forkserver imports once, so that each helper forked from it starts with it.
_PRELOAD = ["mnist_tracking.tracking.rendering", "matplotlib.figure", "matplotlib.backends.backend_agg"]


def _forkserver() -> multiprocessing.context.BaseContext | None:
    """The forkserver start method; None where the platform has none (Windows), or where this process was started
    by a launcher's own method (loky, in a joblib worker), which a forked helper could not set up again; None with
    the figure_helper speed-up off."""
    if (
        not speedups.on("figure_helper")
        or "forkserver" not in multiprocessing.get_all_start_methods()
        or multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver")
    ):
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def start_helper() -> None:
    """Starts the forkserver if it is not running (it then imports Matplotlib while the model trains); returns at
    once."""
    if _forkserver() is not None:
        from multiprocessing import forkserver

        try:
            forkserver.ensure_running()
        except Exception:  # the run goes on: its figures render in this process (FigureLog warns)
            log.warning("Could not start the figure helper's forkserver", exc_info=True)


def _set_up_helper(training: Connection) -> None:
    """In the helper, as it starts: Ctrl-C is the training process's to handle (it ends the run KILLED, then stops
    the helper); and the helper ends when that process is gone, even by `kill -9`, which nothing can catch.

    Otherwise it would wait for work forever: it holds its own end of the queue it reads (multiprocessing's way),
    and the output of the command it was started from, so that whatever reads that would never see it end.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(training,), daemon=True).start()


def _exit_with(training: Connection) -> None:
    """Waits on the read end of a pipe whose only write end the training process holds, and sends nothing: the read
    ends, at EOF, when that process does."""
    try:
        training.recv()
    except EOFError:
        pass
    os._exit(1)


def _save_png(pickled: bytes, path: Path) -> None:
    """In the helper: the figure saved as `client.log_figure` saves it (`savefig` with its defaults)."""
    pickle.loads(pickled).savefig(path)


class FigureLog:
    """A context manager for one run: call it as `client.log_figure(run_id, ...)` is called, with a figure and an
    artifact path. Each figure renders in the helper; leaving the block waits for all of them and stores them with
    the run, so that nothing is missing when the run ends. Where the helper cannot start, or stops, a figure is
    rendered in this process instead (a warning says so).

    `helper=False` renders every figure in this process: a job that a launcher runs beside others has its share of
    the cores, and a helper would only take from the others'.
    """

    def __init__(self, client: mlflow.MlflowClient, run_id: str, helper: bool = True) -> None:
        self._client, self._run_id = client, run_id
        self._folder = Path(tempfile.mkdtemp(prefix="mnist-figures-"))
        self._pending: list[tuple[Future | None, Figure, Path, str]] = []
        context = _forkserver() if helper else None
        self._helper = self._alive = None
        if context is not None:
            training, self._alive = context.Pipe(duplex=False)  # the helper's end, and this process's
            self._helper = ProcessPoolExecutor(1, mp_context=context, initializer=_set_up_helper, initargs=(training,))
            # Forked now, not at the first figure: the helper sets itself up (it imports the job's main module, as
            # any process of a forkserver does) while the model trains, not while the run ends.
            try:
                self._helper.submit(os.getpid)
            except Exception:  # each figure tries again, and falls back to this process
                log.warning("Could not start the figure helper process", exc_info=True)
            training.close()  # the helper has its own copy: only this process's end keeps the pipe open

    def __enter__(self) -> FigureLog:
        return self

    def __call__(self, figure: Figure, artifact_file: str) -> None:
        local = self._folder / artifact_file
        local.parent.mkdir(parents=True, exist_ok=True)
        future = None
        if self._helper is not None:
            try:  # pickled here and now: the helper renders the figure as it is at this call
                future = self._helper.submit(_save_png, pickle.dumps(figure), local)
            except Exception:
                log.warning(
                    "Figure helper process unavailable; rendering %s in this process", artifact_file, exc_info=True
                )
        self._pending.append((future, figure, local, artifact_file))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stores every figure; after a failure in the block, one that cannot be stored is logged, not raised."""
        try:
            for future, figure, local, artifact_file in self._pending:
                try:
                    self._store(future, figure, local, artifact_file)
                except Exception:
                    if exc is None:
                        raise
                    log.exception("Could not store %s with run %s", artifact_file, self._run_id)
        finally:
            self._pending = []
            if self._helper is not None:
                self._helper.shutdown(cancel_futures=True)
                assert self._alive is not None, "set with the helper"
                self._alive.close()
            shutil.rmtree(self._folder, ignore_errors=True)

    def _store(self, future: Future | None, figure: Figure, local: Path, artifact_file: str) -> None:
        if future is not None:
            try:
                future.result()
            except BrokenProcessPool as error:  # the helper died (killed, say): the figure itself is fine
                log.warning("Figure helper process failed (%s); rendering %s in this process", error, artifact_file)
                future = None
        if future is None:  # MLflow's own way: rendered here, then stored
            self._client.log_figure(self._run_id, figure, artifact_file)
        else:
            self._client.log_artifact(self._run_id, str(local), posixpath.dirname(artifact_file) or None)
