"""A run's figures render in a helper process, and each is stored with the run before the block ends, helper or not."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
from PIL import Image

from mnist_tracking.ml import figures
from mnist_tracking.tracking import rendering


def _curves() -> dict[str, list[float]]:
    return {"accuracy": [0.8, 0.9], "val_accuracy": [0.7, 0.85], "loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}


def _stored_png(client: mlflow.MlflowClient, run_id: str, path: str, tmp_path) -> Image.Image:
    return Image.open(client.download_artifacts(run_id, path, str(tmp_path)))


def test_figures_render_in_a_helper_and_are_stored_with_the_run(store, tmp_path):
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("figures")).info.run_id
    with rendering.FigureLog(client, run_id) as log_figure:
        helpers = log_figure._helper._processes  # the helper's processes: started with the block, before any figure
        assert helpers and all(pid != os.getpid() for pid in helpers)
        log_figure(figures.learning_curves(_curves()), "figures/learning_curves.png")
        log_figure(figures.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0])), "confusion.png")
        assert log_figure._helper._processes == helpers  # the same helper renders every figure
    assert {a.path for a in client.list_artifacts(run_id)} == {"figures", "confusion.png"}
    assert _stored_png(client, run_id, "figures/learning_curves.png", tmp_path).size == (1000, 400)  # 10 × 4 in
    assert _stored_png(client, run_id, "confusion.png", tmp_path).size == (600, 550)
    assert not log_figure._folder.exists()  # its local copies are gone


def test_a_figure_is_stored_even_when_the_helper_dies(store, tmp_path, caplog):
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("figures")).info.run_id
    with caplog.at_level(logging.WARNING, "mnist_tracking.tracking.rendering"):
        with rendering.FigureLog(client, run_id) as log_figure:
            log_figure(figures.learning_curves(_curves()), "before.png")
            for pid in list(log_figure._helper._processes):
                os.kill(pid, signal.SIGKILL)
            log_figure(figures.learning_curves(_curves()), "after.png")  # the helper is gone by now, or soon
    assert {a.path for a in client.list_artifacts(run_id)} == {"before.png", "after.png"}
    assert _stored_png(client, run_id, "after.png", tmp_path).size == (1000, 400)
    assert "rendering" in caplog.text and "in this process" in caplog.text


def test_a_figure_that_fails_to_render_fails_the_block(store):
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("figures")).info.run_id
    fig = figures.learning_curves(_curves())
    fig.axes[0].set_title(r"$\frac{1$")  # bad math text: it is parsed, and fails, only when drawn (in the helper)
    with pytest.raises(ValueError):
        with rendering.FigureLog(client, run_id) as log_figure:
            log_figure(fig, "broken.png")
    assert client.list_artifacts(run_id) == []


def test_a_failure_in_the_block_still_stores_what_was_logged(store):
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("figures")).info.run_id
    with pytest.raises(ZeroDivisionError):
        with rendering.FigureLog(client, run_id) as log_figure:
            log_figure(figures.learning_curves(_curves()), "curves.png")
            raise ZeroDivisionError  # the block fails after its figure
    assert [a.path for a in client.list_artifacts(run_id)] == ["curves.png"]


def test_without_a_helper_figures_render_in_place(store, monkeypatch):
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("figures")).info.run_id
    with rendering.FigureLog(client, run_id, helper=False) as log_figure:  # a job beside others: no extra process
        assert log_figure._helper is None
        log_figure(figures.learning_curves(_curves()), "curves.png")
    assert [a.path for a in client.list_artifacts(run_id)] == ["curves.png"]
    # In a joblib worker, multiprocessing starts processes with loky's method, which a forked helper cannot set up.
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "loky")
    assert rendering._forkserver() is None


def test_the_helper_ends_with_the_training_process_even_by_kill_9(store, tmp_path):
    # A training process that opens a FigureLog, says its helper's pid, then waits to be killed.
    script = f"""
import time, mlflow
from mnist_tracking.tracking import rendering
client = mlflow.MlflowClient({store!r})
run_id = client.create_run(client.create_experiment("figures")).info.run_id
with rendering.FigureLog(client, run_id) as log_figure:
    print(*log_figure._helper._processes, flush=True)
    time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        [helper] = map(int, proc.stdout.readline().split())
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while _alive(helper):
            assert time.monotonic() < deadline, "the helper outlived its training process"
            time.sleep(0.05)
        assert proc.stdout.read() == ""  # and the command's output ends: no process holds it any more
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
