"""The fast training path makes the same updates and records the same metrics as a plain model.fit."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pytest

from mnist_tracking.ml.mnist import load_mnist
from mnist_tracking.train import train
from tests.helpers import BACKEND, FIXTURE, runs


def history(store: str, run: mlflow.entities.Run) -> dict[str, list[tuple[int, float]]]:
    """Every metric the run logged, less MLflow's system metrics: how many samples a run gets depends on how long it
    takes (one per 2 s), not on how it trains."""
    client = mlflow.MlflowClient(store)
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
        for name in run.data.metrics
        if not name.startswith("system/")
    }


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


@pytest.mark.skipif(BACKEND != "jax", reason="fused epochs are the JAX backend's (TensorFlow fuses by itself)")
def test_a_fused_epoch_makes_the_step_by_step_updates_without_reading_kerass_batches():
    import keras

    from mnist_tracking.ml.fused import fuse_epochs
    from mnist_tracking.ml.models import mlp
    from mnist_tracking.ml.pipeline import EpochBatches

    class CountedBatches(EpochBatches):
        served = 0

        def __getitem__(self, i):
            self.served += 1
            return super().__getitem__(i)

    data = load_mnist(str(FIXTURE), "standard", 0.25, 1000, None)  # 750 images: 23 batches of 32, then one of 14

    def fit(fused: bool):
        keras.utils.set_random_seed(0)
        model, batches = (
            mlp(16, "relu", (28, 28), 10),
            CountedBatches(data.x_train, data.y_train, 32, seed=3, first_epoch=0),
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=len(batches) if fused else 1,
        )
        if fused:
            fuse_epochs(model, batches)
        history = model.fit(batches, epochs=3, shuffle=False, verbose=0).history
        return model.get_weights(), history, batches.served, int(model.optimizer.iterations)

    fused_weights, fused_history, fused_served, fused_steps = fit(fused=True)
    weights, history, served, steps = fit(fused=False)
    # Keras looks at one batch before fitting; then the step-by-step fit reads all 72, the fused one none.
    assert (fused_served, served) == (1, 1 + 3 * 24)
    assert fused_steps == steps == 3 * 24
    for fused_w, w in zip(fused_weights, weights, strict=True):
        np.testing.assert_allclose(fused_w, w, atol=1e-6)
    assert fused_history.keys() == history.keys() == {"loss", "accuracy"}
    for name in history:
        assert fused_history[name] == pytest.approx(history[name], abs=1e-6), name
    with pytest.raises(ValueError, match="steps_per_execution=24"):
        model = mlp(16, "relu", (28, 28), 10)
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        fuse_epochs(model, EpochBatches(data.x_train, data.y_train, 32, seed=3, first_epoch=0))


@pytest.mark.backends
def test_a_seeded_run_is_reproducible(make_cfg):
    first = train(make_cfg("seed=7"))
    second = train(make_cfg("seed=7"))
    other = train(make_cfg("seed=8"))
    assert first == pytest.approx(second, abs=1e-6)
    assert first["loss"] != other["loss"]


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]])
def test_cli_help_does_not_import_tensorflow(args):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mnist_tracking.train", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported
    assert not {"tensorflow", "keras", "mlflow"} & imported


def test_help_lists_the_projects_groups_and_the_composed_config():
    out = subprocess.run(
        [sys.executable, "-m", "mnist_tracking.train", "model=cnn", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "model: cnn, dense, mlp, mlp64\n" in out.stdout and "experiment: study\n" in out.stdout
    assert "hydra/launcher" not in out.stdout and "ray" not in out.stdout  # no plugin's groups
    assert "_target_: mnist_tracking.ml.models.cnn" in out.stdout  # the config as composed with the overrides
    assert "--hydra-help" in out.stdout
