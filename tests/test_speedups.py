"""The speed-ups in runtime/speedups.py: one switch turns them off, metrics are the same either way, and each one
degrades to the public path, with a warning, when a library no longer has what it relies on."""

from __future__ import annotations

import json
import logging

import pytest

from mnist_tracking.runtime import speedups
from tests.helpers import FIXTURE, run_cli, runs


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch):
    """Sets MNIST_TRACKING_SPEEDUPS for what `speedups` reads next (it reads it once per process)."""

    def set_to(value: str | None) -> frozenset[str]:
        if value is None:
            monkeypatch.delenv(speedups.SWITCH, raising=False)
        else:
            monkeypatch.setenv(speedups.SWITCH, value)
        speedups.enabled.cache_clear()
        return speedups.enabled()

    yield set_to
    speedups.enabled.cache_clear()


def test_the_switch(switch, caplog):
    every = frozenset(speedups.SPEEDUPS)
    assert switch(None) == switch("1") == switch("all") == every
    assert switch("0") == switch("none") == frozenset()
    assert switch("all,-hide_sklearn") == every - {"hide_sklearn"}
    assert switch("none,store_template") == {"store_template"}
    with caplog.at_level(logging.WARNING):
        assert switch("all,-warp_drive") == every
    assert "unknown speed-up 'warp_drive' ignored" in caplog.text


def test_an_mlflow_without_its_system_metrics_monitor_runs_without_them(monkeypatch, caplog):
    monkeypatch.delattr("mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor")
    with caplog.at_level(logging.WARNING):
        assert speedups.system_metrics_monitor("sqlite:///unused.db", "0" * 32, 1.0, resumed=False) is None
    assert "the run goes on without them" in caplog.text


def test_a_cached_store_this_mlflow_cannot_open_is_built_again(switch, tmp_path, monkeypatch, caplog):
    from mnist_tracking.tracking import store

    switch("all")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    speedups.empty_store_path().parent.mkdir(parents=True)
    speedups.empty_store_path().write_bytes(b"not a database")  # as an MLflow upgrade would find the last one's
    with caplog.at_level(logging.WARNING):
        store.prepare_experiment(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "mnist")
    assert "does not open with this MLflow; building a new one" in caplog.text


def test_keras_imports_when_scikit_learn_cannot_be_hidden(switch, monkeypatch):
    switch("all")
    speedups.import_keras()  # Keras is imported already here: nothing to hide, nothing fails
    import sys

    assert not any(isinstance(finder, speedups._Hidden) for finder in sys.meta_path)


@pytest.mark.slow
def test_every_speedup_off_gives_the_same_metrics(tmp_path):
    args = [f"data.path={FIXTURE}", "trainer.epochs=2", "model=mlp64"]
    metrics = {}
    for value in ("all", "none"):
        (tmp_path / value).mkdir()
        code, out = run_cli(args, tmp_path / value, env={speedups.SWITCH: value})
        assert code == 0, out
        [run] = runs(f"sqlite:///{tmp_path / value / 'mlruns' / 'mlflow.db'}")
        metrics[value] = {k: v for k, v in run.data.metrics.items() if not k.startswith("system/")}
    assert metrics["all"] == metrics["none"], json.dumps(metrics, indent=1)
    assert {"val_accuracy", "test_accuracy", "test_macro_f1"} <= metrics["all"].keys()
