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
    assert switch("all,-fast_exit") == every - {"fast_exit"}
    assert switch("none,figure_helper") == {"figure_helper"}
    with caplog.at_level(logging.WARNING):
        assert switch("all,-warp_drive") == every
    assert "unknown speed-up 'warp_drive' ignored" in caplog.text


def test_a_python_without_the_exit_handlers_function_exits_normally(switch, monkeypatch, caplog):
    switch("all")
    monkeypatch.delattr("atexit._run_exitfuncs")
    with caplog.at_level(logging.WARNING):
        speedups.exit_without_teardown()  # returns: the interpreter's own exit follows
    assert "fast_exit is unavailable" in caplog.text


def test_an_mlflow_without_its_package_index_logs_and_goes_on(switch, monkeypatch, caplog):
    switch("all")
    monkeypatch.delattr("mlflow.utils.requirements_utils._init_modules_to_packages_map")
    speedups.index_installed_packages.cache_clear()
    with caplog.at_level(logging.WARNING):
        speedups.wait_for_package_index()
    speedups.index_installed_packages.cache_clear()
    assert "package_index is unavailable" in caplog.text


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
