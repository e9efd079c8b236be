"""The project's exceptions: bad input, a diverged run, and a failure that a run already records."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is valid."""


class RunFailedError(RuntimeError):
    """A job failed inside its MLflow run, which now records it as FAILED; the cause is chained.

    A sweep can go on past such a job: its run and the sweep's report show the failure.
    """

    def __init__(self, run_id: str, cause: BaseException) -> None:
        super().__init__(f"MLflow run {run_id} failed and is recorded as FAILED: {type(cause).__name__}: {cause}")
        self.run_id = run_id


class DivergedError(RuntimeError):
    """Training stopped because the loss stopped being a finite number; the message says when."""
