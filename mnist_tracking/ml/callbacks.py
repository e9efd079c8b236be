"""Keras callbacks of every fit: those the config adds (the `callbacks` group), early stopping that a resumed fit
continues, a log line per epoch, and Ctrl-C kept when Keras swallows it."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
from hydra.utils import instantiate

log = logging.getLogger(__name__)


@runtime_checkable
class Resumable(Protocol):
    """A callback whose state a checkpoint keeps, so that a resumed fit goes on as an uninterrupted one would."""

    def get_state(self) -> dict[str, np.ndarray]: ...

    def set_state(self, state: Mapping[str, np.ndarray]) -> None: ...


def from_config(callbacks: Mapping[str, object] | None) -> dict[str, keras.callbacks.Callback]:
    """The Keras callbacks a `callbacks` config names, by name, one per entry with a `_target_` (as
    lightning-hydra-template instantiates its callbacks): `callbacks=early_stopping`, or
    `+callbacks.<name>._target_=...` on the command line."""
    return {
        name: instantiate(entry, _convert_="all")
        for name, entry in (callbacks or {}).items()
        if isinstance(entry, Mapping) and "_target_" in entry
    }


def resumable(callbacks: Mapping[str, keras.callbacks.Callback]) -> dict[str, Resumable]:
    return {name: callback for name, callback in callbacks.items() if isinstance(callback, Resumable)}


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping, watching `monitor` in `direction` (maximize or minimize, as `optimized_direction`
    says), whose state (patience used, best value, epoch and weights) a checkpoint keeps: a stopped and resumed
    fit stops at the same epoch as an uninterrupted one. With `restore_best_weights`, the fit ends, stopped early
    or not, with the best epoch's weights (`restored_epoch`)."""

    def __init__(
        self,
        monitor: str,
        direction: str,
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        mode = "max" if direction == "maximize" else "min"
        super().__init__(monitor, min_delta, patience, mode=mode, restore_best_weights=restore_best_weights, **kwargs)
        self.restored_epoch: int | None = None
        self._resumed: dict[str, np.ndarray] = {}

    def get_state(self) -> dict[str, np.ndarray]:
        state = {"wait": np.asarray(self.wait), "best_at": np.asarray(self.best_epoch)}
        if self.best is not None:
            state["best"] = np.asarray(self.best)
        for i, weights in enumerate(self.best_weights or []):
            state[f"best_weights_{i}"] = np.asarray(weights)
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Kept until the fit begins (Keras resets the state there)."""
        self._resumed = dict(state)

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.restored_epoch = None
        state, self._resumed = self._resumed, {}
        if state:
            self.wait, self.best_epoch = int(state["wait"]), int(state["best_at"])
        if "best" in state:
            self.best = float(state["best"])
        weights = [state[f"best_weights_{i}"] for i in range(sum(key.startswith("best_weights_") for key in state))]
        self.best_weights = weights or None

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)  # restores the best weights, with restore_best_weights
        if self.restore_best_weights and self.best_weights is not None:
            self.restored_epoch = self.best_epoch


def weights_epoch(callbacks: Sequence[keras.callbacks.Callback], last_epoch: int) -> int:
    """The epoch whose weights the model holds after the fit: the best one when a callback restored it."""
    restored = [getattr(callback, "restored_epoch", None) for callback in callbacks]
    return next((epoch for epoch in restored if epoch is not None), last_epoch)


def epoch_logger(epochs: int) -> keras.callbacks.Callback:
    """A callback that logs one line per epoch with every metric (the job's log file has no progress bar)."""
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: log.info(
            "epoch %d/%d: %s",
            epoch + 1,
            epochs,
            " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if np.ndim(v) == 0),
        )
    )


class KeepInterrupts(keras.callbacks.Callback):
    """Raises again a Ctrl-C or SIGTERM that Keras swallowed, at the next batch or epoch end; a context manager
    around the fit that installs its signal handlers (main thread only) and puts the previous ones back.

    On JAX, most of an epoch's work is waited for while Keras turns its logs into floats inside a bare
    `except:` (`pythonify_logs`), so a KeyboardInterrupt raised there is lost and training would go on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: int | None = None
        # What `signal.signal` returns and takes: a handler, SIG_DFL/SIG_IGN, or None (one not set from Python).
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}

    def __enter__(self) -> KeepInterrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.default_int_handler:  # only where it means KeyboardInterrupt
                    self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _note(self, signum: int, frame: object) -> None:
        self.pending = signum
        raise KeyboardInterrupt

    def _raise_if_pending(self, *args: object, **kwargs: object) -> None:
        if self.pending is not None:
            raise KeyboardInterrupt(f"{signal.Signals(self.pending).name}, raised again after Keras swallowed it")

    on_train_batch_end = on_epoch_end = _raise_if_pending
