"""Reports from the store: a sweep's jobs ranked in its direction; runs that a hard kill left RUNNING."""

from __future__ import annotations

import time

import mlflow
import pytest

from mnist_tracking import report
from mnist_tracking.names import OPTIMIZED_DIRECTION_TAG, OPTIMIZED_METRIC_TAG, PARENT_RUN_TAG, SWEEP_TAG, SWEPT_KEYS_TAG


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
    parent = client.create_run(experiment, tags={SWEEP_TAG: "true", SWEPT_KEYS_TAG: "[]",
                                                 OPTIMIZED_METRIC_TAG: "val_loss", OPTIMIZED_DIRECTION_TAG: direction})
    for value in (0.5, 0.1, 0.9):
        child = client.create_run(experiment, tags={PARENT_RUN_TAG: parent.info.run_id}).info.run_id
        client.log_metric(child, "val_loss", value)
        client.set_terminated(child)
    table = report.build_report(client, parent.info.run_id).table
    assert list(table["val_loss"]) == order
