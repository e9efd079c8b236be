"""Shared fixtures: one MLflow store per test, and quick configs composed from conf/ that log to it."""

from __future__ import annotations

import warnings
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


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which names each grouped test's group in its id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that share one expensive fixture on one test process (`xdist_group`, with `--dist loadgroup`) go first:
    the longest unit of work, started first, is never the suite's tail. Warns when xdist did not group them."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
    ungrouped = [item for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if getattr(config.option, "loadgroup", False) and ungrouped:
        warnings.warn(
            f"--dist loadgroup did not group {len(ungrouped)} tests marked xdist_group (e.g. {ungrouped[0].nodeid}): "
            "each test process may set up their shared fixtures again (pytest-dev/pytest-xdist#1386)",
            stacklevel=1,
        )
