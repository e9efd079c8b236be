"""Secrets (URI passwords, secret-named keys, MLflow tokens) never reach params, tags, artifacts or logs."""

from __future__ import annotations

import logging

import mlflow
import pytest

from mnist_tracking.runtime.redaction import RedactingFilter, redact, redact_text
from mnist_tracking.train import train
from tests.helpers import FIXTURE, run_cli, runs

SECRETS = ["+creds.password=hunter2", "+creds.api_token=tok123", "+remote.uri=postgresql://bob:s3cret@db:5432/x"]
LEAKS = ("hunter2", "tok123", "s3cret")


def test_redaction_rules(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "abc-token-value")
    assert redact_text("http://u:pw@h:5000/x") == "http://u:***@h:5000/x"
    assert redact_text("db.password=hunter2,model=dense") == "db.password=***,model=dense"
    assert redact_text("sent abc-token-value") == "sent ***"
    assert redact_text("model.kernel_size=3 data.path=/a") == "model.kernel_size=3 data.path=/a"  # not secrets
    assert redact({"a": {"secret": "x", "key": None, "uri": "s3://k:v@b"}, "l": ["x.token=1"]}) == {
        "a": {"secret": "***", "key": None, "uri": "s3://k:***@b"},
        "l": ["x.token=***"],
    }


def test_log_filter_masks_formatted_messages(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "uri %s password %s", ("http://a:b@h", "pa55word"), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "uri http://a:***@h password ***"


def test_a_run_records_no_secret(make_cfg, store, caplog):
    caplog.set_level(logging.INFO)
    train(make_cfg("trainer.epochs=1", *SECRETS))
    [run] = runs(store)
    client = mlflow.MlflowClient(store)
    assert run.data.params["creds.password"] == "***" and run.data.params["creds.api_token"] == "***"
    assert run.data.params["remote.uri"] == "postgresql://bob:***@db:5432/x"
    texts = [
        str(run.data.params),
        str(run.data.tags),
        run.info.run_name,
        caplog.text,
        *(
            mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{path}")
            for path in ("config/config.yaml", "config/overrides.yaml")
        ),
    ]
    for text in texts:
        for leak in LEAKS:
            assert leak not in text
    assert "creds.password=***" in run.info.run_name
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_hydra_outputs_and_console_hold_no_secret(tmp_path):
    code, out = run_cli(["-m", "trainer.epochs=1", f"data.path={FIXTURE}", *SECRETS], tmp_path)
    assert code == 0, out
    saved = [p for p in (tmp_path / "multirun").rglob("*") if p.is_file() and p.suffix in (".yaml", ".log")]
    assert any(p.name == "multirun.yaml" for p in saved) and any(p.name == "hydra.yaml" for p in saved)
    for text in [out, *(p.read_text() for p in saved)]:
        for leak in LEAKS:
            assert leak not in text
    assert "creds.password=***" in out


def test_parallel_jobs_rewrite_the_sweeps_multirun_yaml_atomically(tmp_path):
    """Jobs mask multirun.yaml as they start, at once under joblib or Ray: a reader never sees it half-written."""
    import threading

    from omegaconf import OmegaConf

    from mnist_tracking.runtime.redaction import _replace

    path = tmp_path / "multirun.yaml"
    text = OmegaConf.to_yaml({"hydra": {"overrides": {"task": [f"x{i}=***" for i in range(2000)]}}})
    path.write_text(text)
    done = threading.Event()

    def rewrite() -> None:
        for _ in range(100):
            _replace(path, text)
        done.set()

    writers = [threading.Thread(target=rewrite) for _ in range(2)]
    for writer in writers:
        writer.start()
    reads = 0
    while not done.is_set():
        assert path.read_text() == text
        reads += 1
    for writer in writers:
        writer.join()
    assert reads > 0 and list(tmp_path.iterdir()) == [path]  # no temporary file left behind
