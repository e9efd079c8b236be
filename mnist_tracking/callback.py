"""A Keras callback that records a fit in MLflow; works in any `model.fit`, with or without Hydra."""

from __future__ import annotations

import logging
import math
import time

import keras
import mlflow
from mlflow.entities import Metric, Param
from mlflow.utils.async_logging.run_operations import RunOperations

from mnist_tracking import figures

log = logging.getLogger(__name__)


class MlflowCallback(keras.callbacks.Callback):
    """Logs a fit to an MLflow run.

    At the start: the model's `total_params`/`trainable_params` and `model_summary.txt`.
    Every epoch: each entry of Keras's logs (`loss`, `accuracy`, `val_loss`, ...) once, with step = epoch.
    At the end: `figures/learning_curves.png`.

    Args:
        run_id: The run to log to; None means the active run at the start of training.
        tracking_uri: Where that run is; None means MLflow's current tracking URI.
    """

    def __init__(self, run_id: str | None = None, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.history: dict[str, list[float]] = {}
        self._run_id: str | None = None
        self._client: mlflow.MlflowClient | None = None
        self._pending: list[RunOperations] = []  # asynchronous metric logging still in flight

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.history, self._pending = {}, []
        self._run_id = self.run_id or self._active_run_id()
        total = self.model.count_params()
        trainable = sum(math.prod(w.shape) for w in self.model.trainable_weights)
        self._client = client = mlflow.MlflowClient(self.tracking_uri)
        client.log_batch(self._run_id, params=[Param("total_params", str(total)),
                                               Param("trainable_params", str(trainable))])
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, **_: lines.append(line))
        client.log_text(self._run_id, "\n".join(lines) + "\n", "model_summary.txt")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        # Asynchronous: the next epoch does not wait for the tracking store.
        timestamp_ms = int(time.time() * 1000)
        self._pending.append(self._client.log_batch(
            self._run_id, metrics=[Metric(key, value, timestamp_ms, epoch) for key, value in metrics.items()],
            synchronous=False))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.history:
            self._client.log_figure(self._run_id, figures.learning_curves(self.history), "figures/learning_curves.png")
        for operation in self._pending:  # every epoch is on record before the run can end
            operation.wait()
        self._pending = []

    @staticmethod
    def _active_run_id() -> str:
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("MlflowCallback needs a run: wrap fit in `with mlflow.start_run():` or pass run_id=...")
        return run.info.run_id
