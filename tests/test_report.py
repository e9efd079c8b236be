"""Reports from the store: a sweep's jobs ranked in its direction; runs that a hard kill left RUNNING."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pandas as pd
import pytest

from mnist_tracking import report
from mnist_tracking.names import (
    BEST_EPOCH_METRIC,
    BEST_METRIC,
    OPTIMIZABLE_METRICS,
    OPTIMIZED_DIRECTION_TAG,
    OPTIMIZED_METRIC_TAG,
    PARENT_RUN_TAG,
    SWEEP_TAG,
    SWEPT_KEYS_TAG,
)


def test_stale_runs_are_listed_and_marked_failed(store, capsys):
    client = mlflow.MlflowClient(store)
    experiment = client.create_experiment("mnist")
    two_hours_ago = int((time.time() - 7200) * 1000)
    stale = client.create_run(experiment, start_time=two_hours_ago, run_name="killed").info.run_id
    lively = client.create_run(experiment, start_time=two_hours_ago, run_name="still logging").info.run_id
    client.log_metric(lively, "loss", 0.5, step=0)  # activity now: not stale
    fresh = client.create_run(experiment, run_name="just started").info.run_id

    report.main(["--stale", "--older-than", "3600", "--tracking-uri", store])
    out = capsys.readouterr().out
    assert "1 RUNNING run(s) in 'mnist' idle for 3600 s or more:" in out and stale in out
    assert client.get_run(stale).info.status == "RUNNING"  # listing alone changes nothing

    report.main(["--stale", "--older-than", "3600", "--tracking-uri", store, "--mark-failed"])
    assert [client.get_run(r).info.status for r in (stale, lively, fresh)] == ["FAILED", "RUNNING", "RUNNING"]
    report.main(["--stale", "--older-than", "3600", "--tracking-uri", store])
    assert "0 RUNNING run(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("direction", "order"), [("maximize", [0.9, 0.5, 0.1]), ("minimize", [0.1, 0.5, 0.9])])
def test_the_report_ranks_jobs_in_the_sweeps_direction(store, direction, order):
    client = mlflow.MlflowClient(store)
    experiment = client.create_experiment("mnist")
    parent = client.create_run(
        experiment,
        tags={
            SWEEP_TAG: "true",
            SWEPT_KEYS_TAG: "[]",
            OPTIMIZED_METRIC_TAG: "val_loss",
            OPTIMIZED_DIRECTION_TAG: direction,
        },
    )
    for value in (0.5, 0.1, 0.9):
        child = client.create_run(experiment, tags={PARENT_RUN_TAG: parent.info.run_id}).info.run_id
        client.log_metric(child, "val_loss", value)
        client.set_terminated(child)
    table = report.build_report(client, parent.info.run_id).table
    assert list(table["val_loss"]) == order


def sweep_parent(client: mlflow.MlflowClient, swept_keys: str) -> tuple[str, str]:
    """A new experiment and a sweep parent in it that varies `swept_keys` (JSON) and maximizes val_accuracy."""
    experiment = client.create_experiment("mnist")
    parent = client.create_run(
        experiment,
        tags={
            SWEEP_TAG: "true",
            SWEPT_KEYS_TAG: swept_keys,
            OPTIMIZED_METRIC_TAG: "val_accuracy",
            OPTIMIZED_DIRECTION_TAG: "maximize",
        },
    )
    return experiment, parent.info.run_id


def test_a_seed_sweep_is_reported_by_group_and_the_best_group_wins_by_its_mean(store):
    client = mlflow.MlflowClient(store)
    experiment, parent = sweep_parent(client, '["data.normalization", "seed"]')
    # unit has the single luckiest seed (0.99), standard the better mean: standard must win.
    finals = {
        ("unit", 0): 0.90,
        ("unit", 1): 0.91,
        ("unit", 2): 0.99,
        ("standard", 0): 0.94,
        ("standard", 1): 0.96,
        ("standard", 2): 0.95,
    }
    ids = {}
    for (normalization, seed), final in finals.items():
        overrides = f'["data.normalization={normalization}", "seed={seed}"]'
        run = client.create_run(experiment, tags={PARENT_RUN_TAG: parent, "overrides": overrides}).info.run_id
        for step, value in enumerate((final - 0.2, final - 0.1, final)):
            client.log_metric(run, "val_accuracy", value, step=step)
            client.log_metric(run, "val_loss", 1 - value, step=step)
        client.set_terminated(run)
        ids[normalization, seed] = run
    sweep = report.build_report(client, parent)
    groups = sweep.groups
    assert list(groups["data.normalization"]) == ["standard", "unit"]
    assert list(groups["n_seeds"]) == [3, 3] and list(groups["seeds"]) == ["0 1 2", "0 1 2"]
    assert groups["val_accuracy_mean"].tolist() == pytest.approx([0.95, (0.90 + 0.91 + 0.99) / 3])
    assert groups["val_accuracy_std"].tolist() == pytest.approx([0.01, np.std([0.90, 0.91, 0.99], ddof=1)])
    assert {"val_loss_mean", "val_loss_std", "test_accuracy_mean", "test_accuracy_std"} <= set(groups)
    assert groups["median_run_id"].tolist() == [ids["standard", 2], ids["unit", 1]]
    assert sweep.best["run_id"] == ids["standard", 2]  # the best group's median seed, not the luckiest run
    assert sweep.table.iloc[0]["run_id"] == ids["unit", 2]  # which the per-job table still ranks first
    mean, std = sweep.bands["val_accuracy"]["data.normalization=standard"]
    assert mean == pytest.approx([0.75, 0.85, 0.95]) and std == pytest.approx([0.01] * 3)


def test_a_sweep_that_does_not_vary_seed_has_no_groups(store):
    client = mlflow.MlflowClient(store)
    _, parent = sweep_parent(client, '["model"]')
    assert report.build_report(client, parent).groups is None


def test_the_table_shows_each_jobs_best_score_and_epoch_and_nothing_for_a_run_without_them(store):
    client = mlflow.MlflowClient(store)
    experiment, parent = sweep_parent(client, '["model"]')
    tracked, older = (
        client.create_run(experiment, tags={PARENT_RUN_TAG: parent, "overrides": f'["model={m}"]'}).info.run_id
        for m in ("mlp64", "dense")
    )
    for run, final in ((tracked, 0.9), (older, 0.8)):
        client.log_metric(run, "val_accuracy", final)
        client.set_terminated(run)
    client.log_metric(tracked, BEST_METRIC.format("val_accuracy"), 0.95)
    client.log_metric(tracked, BEST_EPOCH_METRIC, 3)
    table = report.build_report(client, parent).table
    columns = list(table)
    after_metrics = columns.index(OPTIMIZABLE_METRICS[-1]) + 1
    assert columns[after_metrics : after_metrics + 2] == ["best_val_accuracy", "best_epoch"]
    first, second = table.to_dict("records")
    assert (first["run_id"], first["best_val_accuracy"], first["best_epoch"]) == (tracked, 0.95, 3)
    assert second["run_id"] == older and pd.isna(second["best_val_accuracy"]) and pd.isna(second["best_epoch"])
