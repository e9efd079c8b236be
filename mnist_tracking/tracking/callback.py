"""A Keras callback that records a fit in MLflow, checkpoints included; works in any `model.fit`, with or without Hydra."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import mlflow
import numpy as np
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param

from mnist_tracking.ml import figures
from mnist_tracking.ml.callbacks import Resumable
from mnist_tracking.ml.checkpoint import save_checkpoint
from mnist_tracking.names import (
    BEST_EPOCH_METRIC,
    BEST_METRIC,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_COPY_TAG,
    CHECKPOINT_EPOCH_TAG,
    STOPPED_EPOCH_TAG,
)
from mnist_tracking.tracking import access
from mnist_tracking.tracking.epoch_images import EpochImages, yield_to_training

log = logging.getLogger(__name__)


class MlflowCallback(keras.callbacks.Callback):
    """Logs a fit to an MLflow run.

    At the start: the model's `total_params`/`trainable_params` and `model_summary.txt`.
    Every epoch: each entry of Keras's logs (`loss`, `accuracy`, `val_loss`, ...) once, with step = epoch, and the
    best value of `monitor` so far with its epoch (`best_val_accuracy`, `best_epoch`); every `checkpoint_every` epochs
    (and the last): a checkpoint, as the run's `checkpoint/checkpoint.npz`, with the state of the `resumable`
    callbacks; with `images`, its images of the epochs it is due.
    At the end: `figures/learning_curves.png`, and the `stopped_epoch` tag when a callback stopped the fit early.

    Args:
        run_id: The run to log to; None means the active run at the start of training.
        tracking_uri: Where that run is; None means MLflow's current tracking URI.
        checkpoint_every: Epochs between checkpoints; 0 means none.
        checkpoint_dir: Where the local copy of the checkpoint goes (default: the working directory).
        recorded: Per-epoch metrics the run already has (a resumed fit): not logged again, and drawn.
        log_figure: Logs a figure to the run, as `(figure, artifact_file)`; default: `MlflowClient.log_figure`.
        monitor: The per-epoch metric whose best value is logged; None: none.
        mode: "max" or "min": which of its values is the best (the first of equal ones).
        resumable: Callbacks of the same fit whose state, by name, goes into the checkpoints.
        images: Images logged every few epochs, drawn on a thread of their own.
        on_close: Called first thing when the fit's records start to be waited for (`close`), e.g. to bound how long.
    """

    def __init__(
        self,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        checkpoint_every: int = 0,
        checkpoint_dir: Path | None = None,
        recorded: Mapping[str, Sequence[float]] | None = None,
        log_figure: Callable[[Figure, str], None] | None = None,
        monitor: str | None = "val_accuracy",
        mode: str = "max",
        resumable: Mapping[str, Resumable] | None = None,
        images: EpochImages | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = checkpoint_dir or Path.cwd()
        self.recorded, self.log_figure = recorded or {}, log_figure
        self.monitor, self.mode = monitor, mode
        self.resumable, self.images, self.on_close = resumable or {}, images, on_close
        self.history: dict[str, list[float]] = {}
        self._run_id: str | None = None
        self._client: mlflow.MlflowClient | None = None
        self._pending: list[Future] = []  # epochs' metrics still on their way to the store
        self._uploads: list[Future] = []  # checkpoint uploads, one at a time, off the training thread
        self._logger: ThreadPoolExecutor | None = None
        self._uploader: ThreadPoolExecutor | None = None
        self._drawings: list[Future] = []  # epochs' images, on a thread of their own: metrics never wait for them
        self._drawer: ThreadPoolExecutor | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.history = {key: list(values) for key, values in self.recorded.items()}
        self._pending, self._uploads, self._drawings = [], [], []
        self._run_id = self.run_id or self._active_run_id()
        self._client = client = mlflow.MlflowClient(self.tracking_uri)
        # The epochs' metrics go out on a thread of our own, in order: MLflow's `synchronous=False` queue polls
        # with a 1 s timeout, which every run then waits for when it ends (end_run: 1.0 s after it, 0.01 s without).
        self._logger = ThreadPoolExecutor(1, thread_name_prefix="metrics-log")
        if self.checkpoint_every:
            self._uploader = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-upload")
        if self.images:
            self._drawer = ThreadPoolExecutor(1, thread_name_prefix="epoch-images", initializer=yield_to_training)
        total = self.model.count_params()
        trainable = sum(math.prod(w.shape) for w in self.model.trainable_weights)
        client.log_batch(
            self._run_id, params=[Param("total_params", str(total)), Param("trainable_params", str(trainable))]
        )
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, **_: lines.append(line))
        client.log_text(self._run_id, "\n".join(lines) + "\n", "model_summary.txt")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        access.raise_refusal(self._pending)
        # Numbers only: a metric whose result is an array (ConfusionCounts) is for the images, not the store.
        metrics = {key: float(value) for key, value in (logs or {}).items() if np.ndim(value) == 0}
        # A resumed fit may retrain epochs whose metrics were recorded before its checkpoint was: once is enough.
        new = {key: value for key, value in metrics.items() if epoch >= len(self.history.get(key, []))}
        for key, value in new.items():
            self.history.setdefault(key, []).append(value)
        last = epoch + 1 == self.params.get("epochs")
        if new:  # off the training thread: the next epoch does not wait for the tracking store
            client, run_id = self._started()
            assert self._logger is not None, "on_train_begin starts the metrics thread"
            timestamp_ms = int(time.time() * 1000)
            self._pending.append(
                self._logger.submit(
                    client.log_batch,
                    run_id,
                    metrics=[Metric(key, value, timestamp_ms, epoch) for key, value in (new | self._best()).items()],
                )
            )
            if self.images and self.images.due(epoch, self.params.get("epochs")):
                shown = self.images.capture(self.model, logs or {})  # now: the next epoch changes them
                assert self._drawer is not None, "on_train_begin starts the image thread when there are images"
                self._drawings.append(self._drawer.submit(self.images.log, client, run_id, epoch, *shown))
        if (
            self.checkpoint_every
            and ((epoch + 1) % self.checkpoint_every == 0 or last)
            and math.isfinite(metrics.get("loss", 0.0))
        ):  # a diverged state is nothing to continue from
            # Named after the run: several runs may share an output folder (a fixed hydra.run.dir, say).
            snapshot = self.checkpoint_dir / f".checkpoint-{self._run_id}-{epoch}" / "checkpoint.npz"
            state = {
                f"{name}.{key}": value for name, cb in self.resumable.items() for key, value in cb.get_state().items()
            }
            save_checkpoint(self.model, epoch, snapshot, state)
            assert self._uploader is not None, "on_train_begin starts the upload thread when checkpointing"
            self._uploads.append(self._uploader.submit(self._upload, snapshot, epoch, list(self._pending)))

    def _best(self) -> dict[str, float]:
        """The best value of `monitor` so far and its epoch; nothing before the metric has a finite value."""
        values = [
            (value, epoch)
            for epoch, value in enumerate(self.history.get(self.monitor or "", []))
            if math.isfinite(value)
        ]
        if not values:
            return {}
        value, epoch = (max if self.mode == "max" else min)(values, key=lambda pair: pair[0])
        return {BEST_METRIC.format(self.monitor): value, BEST_EPOCH_METRIC: float(epoch)}

    def _upload(self, snapshot: Path, epoch: int, metrics: list[Future]) -> None:
        """Stores a checkpoint with the run once the metrics of every epoch up to its own are on record, so that
        a run continued from it never has a gap."""
        for logged in metrics:
            logged.result()
        client, run_id = self._started()
        client.log_artifact(run_id, str(snapshot), CHECKPOINT_ARTIFACT.rsplit("/", 1)[0])
        local = self.checkpoint_dir / f"checkpoint-{run_id}.npz"
        snapshot.replace(local)
        snapshot.parent.rmdir()
        client.set_tag(run_id, CHECKPOINT_COPY_TAG, f"{socket.gethostname()}:{local.resolve()}")
        client.set_tag(run_id, CHECKPOINT_EPOCH_TAG, str(epoch))  # last: the checkpoint is complete

    def on_train_end(self, logs: dict | None = None) -> None:
        self.close()
        if self.model.stop_training and self.last_epoch + 1 < self.params.get("epochs", 0):
            client, run_id = self._started()
            client.set_tag(run_id, STOPPED_EPOCH_TAG, str(self.last_epoch))
        if self.history:
            log_figure = self.log_figure
            if not log_figure:
                client, run_id = self._started()
                log_figure = functools.partial(client.log_figure, run_id)
            log_figure(figures.learning_curves(self.history), "figures/learning_curves.png")

    def close(self, raise_errors: bool = True) -> None:
        """Waits until every epoch's metrics, images and checkpoint are on record; also after an interrupted fit.

        `raise_errors=False` (a fit already failing or stopped) logs a failed upload instead of raising it.
        """
        if self.on_close:
            self.on_close()
        uploads, self._uploads = self._uploads, []
        pending, self._pending = self._pending, []
        drawings, self._drawings = self._drawings, []
        try:
            failures = [exc for exc in (upload.exception() for upload in uploads) if exc is not None]
            if failures and raise_errors:
                raise failures[0]
            if failures:  # most likely all for one reason (a server gone, a permission lost): its traceback once
                log.error(
                    "Could not store %d checkpoint(s) of run %s", len(failures), self._run_id, exc_info=failures[0]
                )
        finally:
            for executor in (self._uploader, self._logger, self._drawer):
                if executor is not None:
                    executor.shutdown()
            self._uploader = self._logger = self._drawer = None
            for logged in [*pending, *drawings]:
                logged.result()

    def _started(self) -> tuple[mlflow.MlflowClient, str]:
        """The client and the run of the fit under way: `on_train_begin` sets both."""
        assert self._client is not None and self._run_id is not None, "on_train_begin has not run"
        return self._client, self._run_id

    @property
    def last_epoch(self) -> int:
        """The last epoch (0-based) the run has metrics of; -1 before the first."""
        return len(self.history.get("loss", [])) - 1

    @contextlib.contextmanager
    def closing(self) -> Iterator[MlflowCallback]:
        """Around a fit: stopped or not, what was trained is on record when the block ends. When the fit fails (or
        Ctrl-C stops it), that error is the one raised; a failed upload is then logged."""
        try:
            yield self
        except BaseException:
            self.close(raise_errors=False)
            raise
        self.close()

    @staticmethod
    def _active_run_id() -> str:
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("MlflowCallback needs a run: wrap fit in `with mlflow.start_run():` or pass run_id=...")
        return run.info.run_id
