"""Shared fixtures: one MLflow store per test, and quick configs composed from conf/ that log to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from omegaconf import DictConfig

from tests.helpers import QUICK, compose_config


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store in tmp_path; the test runs from tmp_path with no tracking env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    yield uri
    mlflow.end_run()  # never leak an active run into the next test


@pytest.fixture
def make_cfg(store: str) -> Callable[..., DictConfig]:
    """Composes a quick config that logs to this test's store; extra overrides go last."""
    return lambda *overrides: compose_config([*QUICK, f"mlflow.tracking_uri={store}", *overrides])
