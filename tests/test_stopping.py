"""Stopping and resuming through the real CLI: a run, a sweep and an Optuna search continue where they
stopped, in the same MLflow records; a diverging run fails fast."""

from __future__ import annotations

import os
import signal
import time

import mlflow
import pytest

from mnist_tracking.names import CHECKPOINT_EPOCH_TAG, EPOCH_METRICS
from tests.helpers import FIXTURE, cli, read_until, run_cli, runs, store_of, sweep_runs

pytestmark = pytest.mark.slow
EPOCHS = 300  # long enough on the fixture to be stopped halfway, on JAX too (~10 ms an epoch there)
# A sweep whose first job must finish before the one stopped: mlp64 at batch 32, still ~3 s of training to stop.
SWEEP_EPOCHS = 100
# No images per epoch: drawing 300 epochs' would take longer than training them (a resumed run's images are
# covered by tests/test_epoch_images.py).
RUN = [f"data.path={FIXTURE}", "model=mlp64", f"trainer.epochs={EPOCHS}", "mlflow.log_images_every=0"]


def stop(
    args: list[str], cwd, sig: int, after: str, count: int = 1, recorded: int = 0, checkpointed: bool = False
) -> str:
    """Starts the CLI, and once `count` lines said `after`, the store holds a run with `recorded` epochs and
    (`checkpointed`) a running run has a checkpoint stored, sends `sig` (SIGINT to its process group, as Ctrl-C)."""
    proc = cli(args, cwd, start_new_session=True)
    seen = read_until(proc, after, count)
    deadline = time.monotonic() + 60

    def ready() -> bool:
        found = runs(store_of(cwd))
        return (not recorded or any(len(steps(store_of(cwd), r.info.run_id)["loss"]) >= recorded for r in found)) and (
            not checkpointed or any(r.info.status == "RUNNING" and CHECKPOINT_EPOCH_TAG in r.data.tags for r in found)
        )

    while not ready():
        assert time.monotonic() < deadline and proc.poll() is None, seen
        time.sleep(0.02)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return seen + out


def steps(store: str, run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient(store)
    return {name: sorted(m.step for m in client.get_metric_history(run_id, name)) for name in EPOCH_METRICS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run, never stopped: what a resumed run must end with."""
    cwd = tmp_path_factory.mktemp("whole")
    code, out = run_cli(RUN, cwd)
    assert code == 0, out
    [run] = runs(store_of(cwd))
    return run.data.metrics


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill-9", "sigterm", "ctrl-c"])
def test_a_stopped_run_continues_in_the_same_run(tmp_path, uninterrupted, sig):
    stop(RUN, tmp_path, sig, f"epoch 3/{EPOCHS}", recorded=3)
    [stopped] = runs(store_of(tmp_path))
    assert stopped.info.status == {signal.SIGKILL: "RUNNING", signal.SIGTERM: "KILLED", signal.SIGINT: "KILLED"}[sig]
    recorded = len(steps(store_of(tmp_path), stopped.info.run_id)["loss"])
    assert 3 <= recorded < EPOCHS

    code, out = run_cli(RUN, tmp_path)
    assert code == 0, out
    [run] = runs(store_of(tmp_path))
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    first = int(run.data.tags["resumed_from_epoch"])
    assert f"Resuming run {run.info.run_id} from epoch {first}" in out
    assert first <= recorded and f"epoch {first}/{EPOCHS}:" not in out  # only the missing epochs trained
    assert steps(store_of(tmp_path), run.info.run_id) == {name: list(range(EPOCHS)) for name in EPOCH_METRICS}
    for name in ("val_accuracy", "val_loss", "test_accuracy"):
        assert run.data.metrics[name] == pytest.approx(uninterrupted[name], abs=1e-6), name


def test_a_killed_sweep_continues_with_the_same_parent(tmp_path):
    sweep = ["-m", "model=dense,mlp64", f"trainer.epochs={SWEEP_EPOCHS}", f"data.path={FIXTURE}"]
    stop(
        sweep,
        tmp_path,
        signal.SIGKILL,
        f"epoch 3/{SWEEP_EPOCHS}",
        count=2,  # the second job is training
        checkpointed=True,
    )
    [parent], children = sweep_runs(store_of(tmp_path))
    first = {r.data.tags["mlflow.runName"]: r for r in children[parent.info.run_id]}
    assert sorted(r.info.status for r in first.values()) == ["FINISHED", "RUNNING"]

    code, out = run_cli(sweep, tmp_path)
    assert code == 0, out
    [again], children = sweep_runs(store_of(tmp_path))
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    jobs = {r.data.tags["mlflow.runName"]: r for r in children[parent.info.run_id]}
    assert jobs.keys() == first.keys() and {r.info.status for r in jobs.values()} == {"FINISHED"}
    for name, job in jobs.items():
        assert job.info.run_id == first[name].info.run_id
        if first[name].info.status == "FINISHED":  # linked, not retrained
            assert job.info.start_time == first[name].info.start_time and "attempts" not in job.data.tags
        else:
            assert job.data.tags["attempts"] == "2" and "resumed_from_epoch" in job.data.tags
    assert parent.data.tags.get("attempts") is None and again.data.tags["attempts"] == "2"


def test_a_stopped_optuna_search_continues_to_its_number_of_trials(tmp_path):
    # A trial may draw batch 128 (5 steps an epoch here): 300 epochs keep the third one training long enough.
    search = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        f"trainer.epochs={EPOCHS}",
        f"data.path={FIXTURE}",
        "data.limit_train=800",
        "mlflow.log_images_every=0",  # as RUN: 4 trials of 300 epochs' images would outlast their training
    ]
    stop(
        search,
        tmp_path,
        signal.SIGKILL,
        f"epoch 2/{EPOCHS}",
        count=3,  # after 2 trials, the third is training
        checkpointed=True,
    )
    code, out = run_cli(search, tmp_path)
    assert code == 0, out
    assert "Continuing the search: 2 of 4 trials done" in out
    [parent], children = sweep_runs(store_of(tmp_path))
    assert parent.info.status == "FINISHED"
    assert len(children[parent.info.run_id]) == 4 and {r.info.status for r in children[parent.info.run_id]} == {
        "FINISHED"
    }
    assert sum("resumed_from_epoch" in r.data.tags for r in children[parent.info.run_id]) == 1
    assert "Study mnist: 4 trials (4 COMPLETE)" in out


def test_a_diverging_run_fails_fast_with_a_reason(tmp_path):
    code, out = run_cli([f"data.path={FIXTURE}", "optimizer.learning_rate=1e30", "trainer.epochs=10"], tmp_path)
    assert code == 1, out
    assert "loss became nan at epoch" in out and "Traceback" not in out
    [run] = runs(store_of(tmp_path))
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith("loss became nan at epoch")
    assert len(steps(store_of(tmp_path), run.info.run_id)["loss"]) < 10


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_learning_rate_is_bad_input(tmp_path, value):
    code, out = run_cli([f"data.path={FIXTURE}", f"optimizer.learning_rate={value}"], tmp_path)
    assert code == 2, out
    assert f"optimizer.learning_rate={value} is invalid" in out and "Traceback" not in out
    assert runs(store_of(tmp_path)) == []


def test_a_diverging_job_fails_and_the_sweep_goes_on(tmp_path):
    code, out = run_cli(
        ["-m", "optimizer.learning_rate=0.01,1e30", "trainer.epochs=3", f"data.path={FIXTURE}"], tmp_path
    )
    assert code == 1, out
    [parent], children = sweep_runs(store_of(tmp_path))
    assert sorted(r.info.status for r in children[parent.info.run_id]) == ["FAILED", "FINISHED"]
    assert "1 of 2 sweep jobs failed" in out
