"""Stopped runs continue where they stopped, in the same run; diverging runs fail with a reason."""

from __future__ import annotations

import socket

import keras
import mlflow
import numpy as np
import pytest

from mnist_tracking import report
from mnist_tracking.errors import ConfigError, DivergedError, RunFailedError
from mnist_tracking.ml import callbacks as fit_callbacks
from mnist_tracking.ml.checkpoint import load_checkpoint, save_checkpoint
from mnist_tracking.names import CHECKPOINT_EPOCH_TAG, EPOCH_METRICS, OWNER_TAG
from mnist_tracking.tracking.resume import claim_run, owner_is_gone
from mnist_tracking.tracking.store import prepare_experiment
from mnist_tracking.train import train
from tests.helpers import artifact_paths, runs

EPOCHS = 4


def stop_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """The next train() is stopped as by Ctrl-C at the end of `epoch` (0-based), after it is recorded."""

    def logger(epochs: int) -> keras.callbacks.Callback:
        def stop(e, logs):
            if e == epoch:
                raise KeyboardInterrupt

        return keras.callbacks.LambdaCallback(on_epoch_end=stop)

    monkeypatch.setattr(fit_callbacks, "epoch_logger", logger)


def stopped_run(
    make_cfg, store: str, monkeypatch: pytest.MonkeyPatch, *overrides: str, epoch: int = 0
) -> mlflow.entities.Run:
    """Trains `overrides`, stops it as by Ctrl-C after `epoch`, and returns its (KILLED) run."""
    with monkeypatch.context() as patch:
        stop_at(patch, epoch)
        with pytest.raises(KeyboardInterrupt):
            train(make_cfg(*overrides))
    return next(r for r in runs(store) if r.info.status == "KILLED")


def steps(store: str, run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient(store)
    return {name: sorted(m.step for m in client.get_metric_history(run_id, name)) for name in EPOCH_METRICS}


# On each backend the fast path; the plain one (the same Keras fit, one step per call) on the default backend only.
@pytest.mark.parametrize("fast", [pytest.param("true", marks=pytest.mark.backends), "false"])
def test_a_stopped_run_continues_in_the_same_run_exactly(make_cfg, store, monkeypatch, fast):
    overrides = ("model=cnn", f"trainer.fast={fast}", f"trainer.epochs={EPOCHS}", "data.limit_train=600")  # dropout too
    whole = train(make_cfg(*overrides, "trainer.resume=false"))
    killed = stopped_run(make_cfg, store, monkeypatch, *overrides, epoch=1)
    assert killed.data.tags[CHECKPOINT_EPOCH_TAG] == "1"
    assert "checkpoint/checkpoint.npz" in artifact_paths(mlflow.MlflowClient(store), killed.info.run_id)

    resumed = train(make_cfg(*overrides))
    assert len(runs(store)) == 2  # no third run: the killed one continued
    run = mlflow.MlflowClient(store).get_run(killed.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == "2" and run.data.tags["attempts"] == "2"
    assert run.data.tags["attempt_2_from_epoch"] == "2"
    assert steps(store, run.info.run_id) == {name: list(range(EPOCHS)) for name in EPOCH_METRICS}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        assert resumed[name] == pytest.approx(whole[name], abs=1e-6), name


def test_resume_false_starts_a_new_run(make_cfg, store, monkeypatch):
    stopped_run(make_cfg, store, monkeypatch)
    train(make_cfg("trainer.resume=false"))
    assert sorted(r.info.status for r in runs(store)) == ["FINISHED", "KILLED"]


def test_resume_by_id_checks_the_run(make_cfg, store, monkeypatch):
    run_id = stopped_run(make_cfg, store, monkeypatch).info.run_id
    with pytest.raises(ConfigError, match=f"trainer.resume='{run_id}' is invalid: its config differs"):
        train(make_cfg(f"trainer.resume={run_id}", "optimizer.learning_rate=0.1"))
    with pytest.raises(ConfigError, match="no such run"):
        train(make_cfg(f"trainer.resume={'0' * 31}1"))
    train(make_cfg(f"trainer.resume={run_id}"))
    assert [r.info.status for r in runs(store)] == ["FINISHED"]
    with pytest.raises(ConfigError, match="the run is FINISHED"):
        train(make_cfg(f"trainer.resume={run_id}"))


def test_a_running_run_is_taken_over_only_when_its_process_is_gone(make_cfg, store, monkeypatch):
    run = stopped_run(make_cfg, store, monkeypatch)
    client = mlflow.MlflowClient(store)
    client.update_run(run.info.run_id, status="RUNNING")  # as kill -9 leaves it, but its owner (this process) lives
    cfg = make_cfg()
    experiment = prepare_experiment(store, "mnist")
    assert claim_run(store, experiment, cfg) is None
    host, pid, start = run.data.tags[OWNER_TAG].rsplit(":", 2)
    client.set_tag(run.info.run_id, OWNER_TAG, f"{host}:{pid}:not-{start}")  # a process long gone
    claimed = claim_run(store, experiment, cfg)
    assert claimed.info.run_id == run.info.run_id and claimed.info.status == "RUNNING"
    assert claim_run(store, experiment, cfg) is None  # a second identical job must not take it too


@pytest.mark.backends
def test_a_diverging_run_stops_and_fails_with_a_reason(make_cfg, store):
    with pytest.raises(RunFailedError) as info:
        train(make_cfg("optimizer.learning_rate=1e30", "trainer.epochs=5"))
    assert isinstance(info.value.__cause__, DivergedError)
    [run] = runs(store)
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("loss became nan at epoch ") and run.data.tags["diverged"] == "true"
    recorded = steps(store, run.info.run_id)["loss"]
    assert len(recorded) < 5 and reason.endswith(f"epoch {len(recorded)}")
    assert run.data.tags.get(CHECKPOINT_EPOCH_TAG) != str(len(recorded) - 1)  # no checkpoint of a nan state


@pytest.mark.backends
def test_a_checkpoint_restores_weights_optimizer_and_dropout_state(tmp_path):
    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dense(2)])
        m.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        return m

    x, y = np.random.default_rng(0).random((32, 4)), np.random.default_rng(1).random((32, 2))
    first = model()
    first.fit(x, y, epochs=2, shuffle=False, verbose=0)
    save_checkpoint(first, 1, tmp_path / "c.npz")
    first.fit(x, y, epochs=1, shuffle=False, verbose=0)
    second = model()
    assert load_checkpoint(second, tmp_path / "c.npz") == 1
    second.fit(x, y, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(first.variables + first.optimizer.variables, second.variables + second.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_a_requeued_slurm_job_takes_over_its_run(make_cfg, store, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    run = stopped_run(make_cfg, store, monkeypatch)
    client = mlflow.MlflowClient(store)
    # As a preempted node leaves it: RUNNING, trained by a process on another machine.
    client.update_run(run.info.run_id, status="RUNNING")
    client.set_tag(run.info.run_id, OWNER_TAG, "node-a:4242:123")
    experiment = prepare_experiment(store, "mnist")
    assert claim_run(store, experiment, make_cfg()) is None  # the same start of the job: it may still be training
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # Slurm requeued the job: its earlier start is over
    assert claim_run(store, experiment, make_cfg()).info.run_id == run.info.run_id


def test_a_stopped_job_that_cannot_continue_is_superseded_in_its_sweeps_report(make_cfg, store, monkeypatch):
    client = mlflow.MlflowClient(store)
    experiment = prepare_experiment(store, "mnist")
    parent = client.create_run(
        experiment, tags={"sweep": "true", "swept_keys": "[]", "optimized_metric": "val_accuracy"}
    ).info.run_id
    job = (f"mlflow.parent_run_id={parent}", "trainer.checkpoint_every=0")  # stopped with no checkpoint
    old = stopped_run(make_cfg, store, monkeypatch, *job)
    train(make_cfg(*job))
    [new] = [r for r in runs(store) if r.info.status == "FINISHED"]
    assert mlflow.MlflowClient(store).get_run(old.info.run_id).data.tags["superseded_by"] == new.info.run_id
    table = report.build_report(client, parent).table
    assert list(table["run_id"]) == [new.info.run_id] and list(table["status"]) == ["FINISHED"]


def test_an_owner_whose_start_is_unknown_is_never_taken_for_gone(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    host = socket.gethostname()
    assert owner_is_gone({OWNER_TAG: f"{host}:999999999:12345"})  # no such process here
    assert not owner_is_gone({OWNER_TAG: f"{host}:999999999:None"})  # start unknown (no /proc where it ran)
    assert not owner_is_gone({OWNER_TAG: "elsewhere:999999999:12345"})  # another machine's process
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    # The same start of a Slurm job: the pid rule still applies.
    assert owner_is_gone({OWNER_TAG: f"{host}:999999999:12345", "slurm_job": "5:0"})
