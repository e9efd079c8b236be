"""A dry run (`sweep.dry_run=true`) says what each job would do (train, skip, resume) and records nothing."""

from __future__ import annotations

import math
import re

import keras
import mlflow
import pytest

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml import callbacks as fit_callbacks
from mnist_tracking.sweeps.dry_run import find_plan, plan_job
from mnist_tracking.train import train
from tests.helpers import BACKEND, FIXTURE, QUICK, compose_config, run_cli, runs, store_of, sweep_runs


def snapshot(store: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Every run in the store (deleted ones too), with its status and tags: what a dry run must leave as it is."""
    client = mlflow.MlflowClient(store)
    return {
        run.info.run_id: (run.info.status, run.data.tags)
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    }


def stop_after_first_epoch(cfg) -> mlflow.entities.Run:
    """Trains `cfg` and stops it as Ctrl-C would after its first epoch (checkpointed); returns its KILLED run."""

    def logger(epochs: int) -> keras.callbacks.Callback:
        def stop(epoch, logs):
            raise KeyboardInterrupt

        return keras.callbacks.LambdaCallback(on_epoch_end=stop)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fit_callbacks, "epoch_logger", logger)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    return next(r for r in runs(cfg.mlflow.tracking_uri) if r.info.status == "KILLED")


def test_a_single_run_plans_as_it_would_train_and_records_nothing(make_cfg, store, tmp_path):
    def planned(*overrides: str) -> tuple[str, str | None, int | None]:
        plan = find_plan(make_cfg(*overrides))
        return plan.action, plan.run_id, plan.epoch

    assert planned() == ("train", None, None)
    assert not (tmp_path / "store").exists()  # no store is created to look into
    stopped = stop_after_first_epoch(make_cfg()).info.run_id
    before = snapshot(store)
    assert planned() == ("resume", stopped, 1)
    assert planned("trainer.resume=false") == ("train", None, None)
    assert planned(f"trainer.resume={stopped}") == ("resume", stopped, 1)
    assert math.isnan(plan_job(make_cfg("sweep.dry_run=true")))
    assert snapshot(store) == before

    train(make_cfg())  # the stopped run continues and finishes
    before = snapshot(store)
    assert planned() == ("train", None, None)  # a single run trains again unless told to skip
    assert planned("sweep.skip_finished=true") == ("skip", stopped, None)
    assert snapshot(store) == before


def test_a_dry_run_checks_the_config_as_a_real_run_does(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="optimizer.learning_rate=-1 is invalid"):
        plan_job(make_cfg("sweep.dry_run=true", "optimizer.learning_rate=-1"))
    with pytest.raises(ConfigError, match="sweep.dry_run='yes' is invalid: use true or false"):
        plan_job(compose_config([*QUICK, "sweep.dry_run=yes"]))
    with pytest.raises(ConfigError, match="no such run"):  # no store: no run to continue
        plan_job(make_cfg("sweep.dry_run=true", f"trainer.resume={'0' * 32}"))
    assert not (tmp_path / "store").exists()


def plans(out: str) -> dict[str, str]:
    """Each job's planned action, as the command's output says it, by job name."""
    return dict(re.findall(r"Dry run: (\S+): (would .+)", out))


@pytest.mark.slow
def test_a_dry_run_of_a_half_finished_sweep_lists_what_its_rerun_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the stopped job trained here keeps its local checkpoint copy here
    grid = [
        "-m",
        "model=dense,mlp64",
        "optimizer.learning_rate=0.01,0.1",
        "trainer.epochs=2",
        f"data.path={FIXTURE}",
        f"backend={BACKEND}",
    ]
    code, out = run_cli(grid, tmp_path)
    assert code == 0, out
    store = store_of(tmp_path)
    client = mlflow.MlflowClient(store)
    [parent], children = sweep_runs(store)
    jobs = {r.data.tags["mlflow.runName"]: r for r in children[parent.info.run_id]}
    done, stopped_name, never = sorted(jobs)[:2], sorted(jobs)[2], sorted(jobs)[3]
    # Half finished: the sweep was stopped while its third job trained (first epoch checkpointed), before its fourth.
    client.delete_run(jobs[stopped_name].info.run_id)
    client.delete_run(jobs[never].info.run_id)  # a deleted run is out of every search: as if it never ran
    cfg = compose_config(
        [*QUICK, "model=mlp64", "optimizer.learning_rate=0.01", f"mlflow.tracking_uri={store}"]
        + [f"mlflow.parent_run_id={parent.info.run_id}"]
    )
    assert "model=mlp64,optimizer.learning_rate=0.01," in stopped_name
    stopped = stop_after_first_epoch(cfg)
    client.set_terminated(parent.info.run_id, "KILLED")
    before, versions = snapshot(store), len(client.search_model_versions())

    code, out = run_cli([*grid, "sweep.dry_run=true"], tmp_path)
    assert code == 0, out
    assert f"Dry run: would continue sweep {parent.info.run_id} (attempt 2)" in out
    expected = {
        **{name: f"would skip: FINISHED run {jobs[name].info.run_id} has the same config" for name in done},
        stopped_name: f"would resume run {stopped.info.run_id} from epoch 1",
        never: "would train a new run",
    }
    assert plans(out) == expected
    assert "Dry run: 4 jobs: 1 would train, 2 would skip, 1 would resume; nothing was recorded" in out
    assert snapshot(store) == before and len(client.search_model_versions()) == versions

    code, out = run_cli(grid, tmp_path)  # the real rerun does what the dry run said
    assert code == 0, out
    [again], children = sweep_runs(store)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    rerun = {r.info.run_id: r for r in children[again.info.run_id]}
    kept = {jobs[name].info.run_id for name in done} | {stopped.info.run_id}
    assert len(rerun) == 4 and kept < rerun.keys() and {r.info.status for r in rerun.values()} == {"FINISHED"}
    assert rerun[stopped.info.run_id].data.tags["resumed_from_epoch"] == "1"
    assert all("attempts" not in rerun[run_id].data.tags for run_id in rerun.keys() - {stopped.info.run_id})


@pytest.mark.slow
def test_a_dry_run_where_no_store_is_creates_none(tmp_path):
    code, out = run_cli(["sweep.dry_run=true", f"data.path={FIXTURE}"], tmp_path)
    assert code == 0, out
    assert plans(out) == {"data.path=mnist_small.npz": "would train a new run"}
    assert "Dry run: 1 job: 1 would train, 0 would skip, 0 would resume" in out

    search = ["hparams_search=optuna", "hydra.sweeper.n_jobs=3", "sweep.dry_run=true", f"data.path={FIXTURE}"]
    code, out = run_cli(search, tmp_path)
    assert code == 0, out
    assert len(plans(out)) == 3 and set(plans(out).values()) == {"would train a new run"}  # Optuna's first batch
    assert "Dry run: 3 jobs: 3 would train, 0 would skip, 0 would resume" in out
    assert "Launching 3 jobs" in out and "Launching" not in out.split("Launching 3 jobs")[1]
    assert not (tmp_path / "mlruns").exists()
    assert runs(store_of(tmp_path)) == []
