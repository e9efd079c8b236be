"""The project's exceptions: bad input, a diverged run, a failure that a run already records; a server's refusal."""

from __future__ import annotations

from typing import TypeGuard


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is valid."""


class RunFailedError(RuntimeError):
    """A job failed inside its MLflow run, which now records it as FAILED (unless the store refused even that:
    `recorded`); the cause is chained.

    A sweep can go on past such a job: its run and the sweep's report show the failure.
    """

    def __init__(self, run_id: str, cause: BaseException, recorded: bool = True) -> None:
        on_record = "is recorded as FAILED" if recorded else "could not be recorded as FAILED (it shows RUNNING)"
        super().__init__(f"MLflow run {run_id} failed and {on_record}: {type(cause).__name__}: {cause}")
        self.run_id, self.recorded = run_id, recorded


class DivergedError(RuntimeError):
    """Training stopped because the loss stopped being a finite number; the message says when."""


def refused(exc: BaseException | None) -> TypeGuard[BaseException]:
    """Whether `exc` is a tracking server's refusal (HTTP 401 or 403) of a request."""
    status = getattr(exc, "get_http_status_code", None)
    return callable(status) and status() in (401, 403)
