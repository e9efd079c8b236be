"""Sweeps as experiments: a parent run with nested jobs and a report; joblib, Optuna, resume, failures."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from mnist_tracking import report
from tests.helpers import (
    FIXTURE,
    GRID,
    assert_complete_child,
    report_table,
    run_cli,
    runs,
    signal_while_training,
    store_of,
    sweep_runs,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One 4-job grid sweep, shared by the tests that read it."""
    tmp_path = tmp_path_factory.mktemp("grid")
    code, out = run_cli(GRID, tmp_path)
    assert code == 0, out
    return tmp_path


def test_grid_sweep_nests_jobs_under_one_parent_with_a_report(grid):
    store = store_of(grid)
    [parent], children = sweep_runs(store)
    jobs = children[parent.info.run_id]
    client = mlflow.MlflowClient(store)
    assert len(jobs) == 4 and len(runs(store)) == 5
    for job in jobs:
        assert_complete_child(client, job)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["swept.model"] == "dense,mlp64"
    assert parent.data.params["swept.optimizer.learning_rate"] == "0.01,0.1"
    assert parent.data.params["jobs"] == "4"
    assert "-m model=dense,mlp64 optimizer.learning_rate=0.01,0.1" in parent.data.tags["command"]

    table = report_table(client, parent.info.run_id)
    assert len(table) == 4 and set(table["run_id"]) == {j.info.run_id for j in jobs}
    assert list(table["val_accuracy"]) == sorted(table["val_accuracy"], reverse=True)
    assert {
        "model",
        "optimizer.learning_rate",
        "val_loss",
        "test_accuracy",
        "best_val_accuracy",
        "best_epoch",
        "epochs",
        "wall_time_s",
        "status",
    } <= set(table)
    assert set(table["model"]) == {"dense", "mlp64"}
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/summary.csv", "sweep/summary.json", "sweep/val_accuracy.png", "sweep/val_loss.png"} <= logged

    best = table.iloc[0]
    assert parent.data.tags["best_run_id"] == best["run_id"]
    assert parent.data.tags["best.model"] == best["model"]
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    name, version = parent.data.tags["registered_model"].split("/")
    assert client.get_model_version(name, version).source.startswith("models:/")


def test_report_cli_rebuilds_the_table_from_the_store(grid, tmp_path):
    parents, _ = sweep_runs(store_of(grid))
    # An explicit sweep, then the latest one (the resume test may have added a second sweep).
    for parent, args in ((parents[0], ["--sweep", parents[0].info.run_id]), (parents[-1], [])):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "mnist_tracking.report",
                *args,
                "--tracking-uri",
                store_of(grid),
                "--out",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert f"Sweep {parent.info.run_id} (FINISHED), 4 jobs" in out.stdout
        table = pd.read_csv(tmp_path / "report" / "summary.csv")
        assert len(table) == 4 and table.equals(report_table(mlflow.MlflowClient(store_of(grid)), parent.info.run_id))
        assert (tmp_path / "report" / "val_accuracy.png").stat().st_size > 0
        assert (tmp_path / "report" / "val_loss.png").stat().st_size > 0


def test_a_sweep_records_what_mattered_and_the_report_rebuilds_it(tmp_path, capsys):
    keys = ["model.hidden_units", "optimizer.learning_rate"]
    grid = ["-m", "model.hidden_units=8,16,32", "optimizer.learning_rate=0.01,0.1", "trainer.epochs=1"]
    code, out = run_cli([*grid, f"data.path={FIXTURE}"], tmp_path)
    assert code == 0, out
    store = store_of(tmp_path)
    [parent], children = sweep_runs(store)
    assert len(children[parent.info.run_id]) == 6
    logged = {
        key.removeprefix("importance."): v for key, v in parent.data.metrics.items() if key.startswith("importance.")
    }
    assert logged.keys() == set(keys) and sum(logged.values()) == pytest.approx(1, abs=1e-6)
    client = mlflow.MlflowClient(store)
    assert "sweep/parallel_coordinates.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}

    report.main(["--sweep", parent.info.run_id, "--out", str(tmp_path / "report"), "--tracking-uri", store])
    rebuilt = pd.read_csv(tmp_path / "report" / "importance.csv")
    assert dict(zip(rebuilt["key"], rebuilt["importance"])) == pytest.approx(logged)
    assert (tmp_path / "report" / "parallel_coordinates.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Importance of each swept key for val_accuracy" in printed
    assert all(key in printed.split("Importance of each swept key")[1] for key in keys)


def test_skip_finished_reruns_nothing_and_links_the_earlier_runs(grid):
    code, out = run_cli([*GRID, "sweep.skip_finished=true"], grid)
    assert code == 0, out
    store = store_of(grid)
    parents, children = sweep_runs(store)
    first, second = parents
    assert children[second.info.run_id] == []  # 0 new jobs
    reused = {k.removeprefix("reused_run.") for k in second.data.tags if k.startswith("reused_run.")}
    assert reused == {r.info.run_id for r in children[first.info.run_id]}
    assert len(report_table(mlflow.MlflowClient(store), second.info.run_id)) == 4


def test_joblib_sweep_loses_nothing(tmp_path):
    code, out = run_cli([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    assert code == 0, out
    assert "database is locked" not in out
    store = store_of(tmp_path)
    [parent], children = sweep_runs(store)
    client = mlflow.MlflowClient(store)
    assert len(children[parent.info.run_id]) == 4 and len(runs(store)) == 5
    for job in children[parent.info.run_id]:
        assert_complete_child(client, job)
    assert len(report_table(client, parent.info.run_id)) == 4


def test_optuna_trials_nest_under_the_parent(tmp_path):
    code, out = run_cli(
        ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "trainer.epochs=1", f"data.path={FIXTURE}"], tmp_path
    )
    assert code == 0, out
    [parent], children = sweep_runs(store_of(tmp_path))
    assert len(children[parent.info.run_id]) == 3
    # Each trial's rerun command runs that one trial, not a new search.
    assert all(
        "hparams_search=optuna" in c.data.tags["command"] and c.data.tags["command"].endswith("hydra.mode=RUN")
        for c in children[parent.info.run_id]
    )
    assert parent.data.params["swept.optimizer.learning_rate"] == "tag(log, interval(0.001, 0.3))"
    assert len(report_table(mlflow.MlflowClient(store_of(tmp_path)), parent.info.run_id)) == 3


def test_a_failing_job_is_recorded_and_the_others_reported(tmp_path):
    # Keras rejects an unknown activation when the model is built, inside the job's run.
    code, out = run_cli(
        ["-m", "model.activation=relu,no_such_activation", "trainer.epochs=1", f"data.path={FIXTURE}"], tmp_path
    )
    assert code != 0
    assert "1 of 2 sweep jobs failed" in out
    store = store_of(tmp_path)
    [parent], children = sweep_runs(store)
    by_status = {r.info.status: r for r in children[parent.info.run_id]}
    assert by_status.keys() == {"FINISHED", "FAILED"}
    assert parent.info.status == "FAILED"
    assert json.loads(parent.data.tags["failed_jobs"]) == [by_status["FAILED"].info.run_id]
    table = report_table(mlflow.MlflowClient(store), parent.info.run_id)
    assert list(table["status"]) == ["FINISHED", "FAILED"]
    assert parent.data.tags["best_run_id"] == by_status["FINISHED"].info.run_id


def test_sigterm_ends_the_sweep_and_its_running_job_killed(tmp_path):
    code, out = signal_while_training(["-m", "model=dense,mlp64", f"data.path={FIXTURE}"], tmp_path)
    assert code != 0
    [parent], children = sweep_runs(store_of(tmp_path))
    assert parent.info.status == "KILLED", out
    assert [r.info.status for r in children[parent.info.run_id]] == ["KILLED"]


def test_a_single_run_has_no_parent(tmp_path):
    code, out = run_cli(["trainer.epochs=1", f"data.path={FIXTURE}"], tmp_path)
    assert code == 0, out
    [run] = runs(store_of(tmp_path))
    assert "mlflow.parentRunId" not in run.data.tags and "sweep" not in run.data.tags


def test_a_seed_sweep_reports_groups_of_seeds_with_mean_std_and_bands(tmp_path):
    code, out = run_cli(
        [
            "-m",
            "model=mlp64",
            "seed=0,1,2",
            "data.normalization=unit,standard",
            "trainer.epochs=3",
            f"data.path={FIXTURE}",
        ],
        tmp_path,
    )
    assert code == 0, out
    store = store_of(tmp_path)
    client = mlflow.MlflowClient(store)
    [parent], children = sweep_runs(store)
    assert len(children[parent.info.run_id]) == 6
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {
        "sweep/groups.csv",
        "sweep/groups.json",
        "sweep/val_accuracy_by_seed_group.png",
        "sweep/val_loss_by_seed_group.png",
    } <= logged
    groups = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep/groups.csv", str(tmp_path)))
    assert sorted(groups["data.normalization"]) == ["standard", "unit"]
    assert list(groups["n_seeds"]) == [3, 3] and list(groups["seeds"]) == ["0 1 2", "0 1 2"]
    assert {"val_accuracy_mean", "val_accuracy_std", "test_accuracy_mean", "test_accuracy_std"} <= set(groups)
    assert groups["val_accuracy_mean"].is_monotonic_decreasing
    best_group = groups.iloc[0]
    assert parent.data.tags["best_run_id"] == best_group["median_run_id"]
    assert parent.data.tags["best.data.normalization"] == best_group["data.normalization"]

    out = subprocess.run(
        [sys.executable, "-m", "mnist_tracking.report", "--tracking-uri", store, "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "2 groups of jobs that differ only in seed, best mean first" in out.stdout
    assert pd.read_csv(tmp_path / "report" / "groups.csv").equals(groups)
    assert (tmp_path / "report" / "val_accuracy_by_seed_group.png").stat().st_size > 0
