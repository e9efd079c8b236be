"""Shared fixtures: configs composed from conf/ on the committed MNIST fixture, one MLflow store per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
FIXTURE = ROOT / "tests" / "data" / "mnist_small.npz"  # 2,000 train + 500 test real MNIST digits
# Shrinks a run to seconds: the fixture, 2 epochs.
QUICK = [f"data.path={FIXTURE}", "trainer.epochs=2"]


def compose_config(overrides: list[str]) -> DictConfig:
    """Composes conf/config.yaml as @hydra.main would, and makes it the current Hydra job."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the task function never sees the hydra node
    return cfg


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


def runs(uri: str, experiment: str = "mnist") -> list[mlflow.entities.Run]:
    """All runs of `experiment` in the store at `uri` (none when the store or experiment is absent)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])
