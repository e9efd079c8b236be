"""Secrets never leave the process: credentials in URIs, secret-named keys and MLflow tokens become ***."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

MASK = "***"
SECRET_NAME = re.compile(r"password|passwd|token|secret|key", re.IGNORECASE)
SECRET_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
_URI_CREDENTIALS = re.compile(r"(://[^/:@\s'\"]+):[^@\s'\"]*@")
# `name=value` where the name's last part is secret-like, as in Hydra overrides and run names.
_SECRET_ASSIGNMENT = re.compile(
    r"((?:^|(?<=[\s,'\"]))[\w.+~]*(?:password|passwd|token|secret|key)\w*=)[^,\s'\"]+", re.IGNORECASE
)


def is_secret_name(key: str) -> bool:
    """Whether a (dotted) config key's last part is named like a secret."""
    return bool(SECRET_NAME.search(key.rsplit(".", 1)[-1]))


def redact_text(text: str) -> str:
    """`text` with URI passwords, secret-named assignments and MLflow token values masked."""
    text = _URI_CREDENTIALS.sub(rf"\1:{MASK}@", text)
    text = _SECRET_ASSIGNMENT.sub(rf"\1{MASK}", text)
    for name in SECRET_ENV:
        if os.environ.get(name):
            text = text.replace(os.environ[name], MASK)
    return text


def redact(value: Any) -> Any:
    """A copy of a plain container (dicts, lists, strings) with every secret masked."""
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_name(str(k)) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_filter() -> None:
    """Masks secrets in every log record this process creates from now on, whatever handler prints it.

    A record factory rather than handler filters: Hydra replaces its logging handlers between jobs.
    """
    base = logging.getLogRecordFactory()
    if getattr(base, "redacting", False):
        return
    redactor = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        redactor.filter(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RedactSecretsCallback(Callback):
    """Masks secrets in what Hydra saves of a job (.hydra/*.yaml, multirun.yaml) and in its log output."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_filter()  # Hydra logs each job's overrides as it launches it

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_filter()
        saved = list((Path(config.hydra.runtime.output_dir) / ".hydra").glob("*.yaml"))
        if config.hydra.mode == RunMode.MULTIRUN:
            saved.append(Path(config.hydra.sweep.dir) / "multirun.yaml")
        for path in saved:
            if not path.is_file():  # Hydra wrote these before this job started; jobs keep their config in memory
                continue
            saved_config = OmegaConf.to_container(OmegaConf.load(path))
            if (masked := redact(saved_config)) != saved_config:  # as written, when there is nothing to mask
                _replace(path, OmegaConf.to_yaml(masked))


def _replace(path: Path, text: str) -> None:
    """Rewrites `path` atomically: parallel jobs rewrite the sweep's multirun.yaml, and a reader must never
    see it half-written."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # as Hydra wrote it (a temporary file starts private)
    os.replace(tmp.name, path)
