"""The report command's stale-run listing: runs that a hard kill left RUNNING."""

from __future__ import annotations

import time

import mlflow

from mnist_tracking import report


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
