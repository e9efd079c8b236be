"""Keras callbacks of every fit: those the config adds (the `callbacks` group), a log line per epoch, and Ctrl-C
kept when Keras swallows it."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import keras
from hydra.utils import instantiate

log = logging.getLogger(__name__)


def from_config(callbacks: Mapping[str, object] | None) -> list[keras.callbacks.Callback]:
    """The Keras callbacks a `callbacks` config names, one per entry with a `_target_` (as lightning-hydra-template
    instantiates its callbacks): `callbacks=early_stopping`, or `+callbacks.<name>._target_=...` on the command
    line."""
    return [
        instantiate(entry, _convert_="all")
        for entry in (callbacks or {}).values()
        if isinstance(entry, Mapping) and "_target_" in entry
    ]


def around(
    recorder: keras.callbacks.Callback, configured: Mapping[str, object] | None, epochs: int
) -> list[keras.callbacks.Callback]:
    """A run's callbacks in order: the config's (which may add to an epoch's logs), then the `recorder`, which
    records those logs, then a log line per epoch."""
    return [*from_config(configured), recorder, epoch_logger(epochs)]


def epoch_logger(epochs: int) -> keras.callbacks.Callback:
    """A callback that logs one line per epoch with every metric (the job's log file has no progress bar)."""
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: log.info(
            "epoch %d/%d: %s", epoch + 1, epochs, " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
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
