"""The fast training path makes the same updates and records the same metrics as a plain model.fit."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest

from mnist_tracking.train import train
from tests.helpers import runs


def history(store: str, run: mlflow.entities.Run) -> dict[str, list[tuple[int, float]]]:
    client = mlflow.MlflowClient(store)
    return {name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
            for name in run.data.metrics}


@pytest.mark.backends
def test_fast_and_plain_fit_make_the_same_updates(make_cfg, store):
    # 1,500 training images at batch 32: 47 steps an epoch, the last one a partial batch of 28.
    fast = train(make_cfg("trainer.fast=true", "trainer.epochs=3"))
    plain = train(make_cfg("trainer.fast=false", "trainer.epochs=3"))
    by_mode = {r.data.params["trainer.fast"]: r for r in runs(store)}
    fast_history, plain_history = history(store, by_mode["True"]), history(store, by_mode["False"])
    assert fast_history.keys() == plain_history.keys() >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert [s for s, _ in fast_history["val_loss"]] == [s for s, _ in plain_history["val_loss"]] == [0, 1, 2]
    assert by_mode["True"].data.metrics["optimizer_steps"] == by_mode["False"].data.metrics["optimizer_steps"] == 3 * 47
    for name in ("loss", "accuracy", "val_accuracy", "test_accuracy"):
        assert fast[name] == pytest.approx(plain[name], abs=1e-6), name
    assert fast["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-5)  # evaluated in bigger batches: rounding


@pytest.mark.backends
def test_a_seeded_run_is_reproducible(make_cfg):
    first = train(make_cfg("seed=7"))
    second = train(make_cfg("seed=7"))
    other = train(make_cfg("seed=8"))
    assert first == pytest.approx(second, abs=1e-6)
    assert first["loss"] != other["loss"]


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_cli_help_does_not_import_tensorflow(args):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "mnist_tracking.train", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported
    assert not {"tensorflow", "keras", "mlflow"} & imported


def test_help_lists_the_projects_groups_and_the_composed_config():
    out = subprocess.run([sys.executable, "-m", "mnist_tracking.train", "model=cnn", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "model: cnn, dense, mlp, mlp64\n" in out.stdout and "experiment: study\n" in out.stdout
    assert "hydra/launcher" not in out.stdout and "ray" not in out.stdout  # no plugin's groups
    assert "_target_: mnist_tracking.models.cnn" in out.stdout  # the config as composed with the overrides
    assert "--hydra-help" in out.stdout
