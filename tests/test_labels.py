"""The config's `tags` and `notes` become MLflow tags of every run and sweep parent: masked, checked, not hashed."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from mnist_tracking.config.checks import check_config
from mnist_tracking.errors import ConfigError
from mnist_tracking.names import NOTE_TAG
from mnist_tracking.tracking.identity import config_hash, sweep_hash
from mnist_tracking.tracking.labels import user_tags
from mnist_tracking.train import train
from tests.helpers import CONF_DIR, FIXTURE, compose_config, run_cli, runs, store_of, sweep_runs
from tests.test_resume import stopped_run

LABELS = ["+tags.purpose=baseline", "+tags.round=3", "+tags.final=true", 'notes="why this run, in short"']


def test_tags_and_notes_are_tags_of_the_run_not_params(make_cfg, store):
    train(make_cfg(*LABELS, "trainer.epochs=1"))
    [run] = runs(store)
    assert {k: run.data.tags.get(k) for k in ("purpose", "round", "final", NOTE_TAG)} == {
        "purpose": "baseline",
        "round": "3",
        "final": "true",
        NOTE_TAG: "why this run, in short",
    }
    assert not [key for key in run.data.params if key.startswith(("tags.", "notes"))]


def test_a_secret_named_tag_and_a_secret_in_notes_are_masked():
    cfg = compose_config(["+tags.api_token=abc", "+tags.team.password=pw", 'notes="see http://bob:pw@host, key=k1"'])
    assert user_tags(cfg) == {"api_token": "***", "team.password": "***", NOTE_TAG: "see http://bob:***@host, key=***"}


@pytest.mark.parametrize("key", ["config_hash", "sweep", "best.model", "attempt_2_from_epoch", "mlflow.user"])
def test_a_tag_the_project_or_mlflow_writes_is_a_config_error(key):
    cfg = compose_config([f"+tags.{key}=x"])
    with pytest.raises(ConfigError, match=f"tags.{key} is reserved"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("override", "message"), [("tags=5", "tags=5 is invalid"), ("notes=42", "notes=42 is invalid")]
)
def test_tags_must_be_a_mapping_and_notes_text(override, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_config([override]))


def test_tags_and_notes_leave_the_config_and_sweep_hashes_alone():
    plain, labelled = compose_config([]), compose_config(LABELS)
    assert config_hash(plain) == config_hash(labelled)
    assert config_hash(plain) != config_hash(compose_config(["seed=1"]))

    def sweep_config(*overrides: str):  # with its hydra node, which holds the command line's overrides
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True)

    assert sweep_hash(sweep_config()) == sweep_hash(sweep_config(*LABELS))
    assert sweep_hash(sweep_config()) != sweep_hash(sweep_config("seed=1"))


def test_a_continued_run_gets_the_tags_of_the_command_that_continues_it(make_cfg, store, monkeypatch):
    overrides = ("trainer.epochs=3", "data.limit_train=600")
    killed = stopped_run(make_cfg, store, monkeypatch, *overrides, "+tags.purpose=first", epoch=0)
    train(make_cfg(*overrides, "+tags.purpose=second", "+tags.extra=yes", "notes=continued"))
    [run] = runs(store)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert (run.data.tags["purpose"], run.data.tags["extra"], run.data.tags[NOTE_TAG]) == ("second", "yes", "continued")


@pytest.mark.slow
def test_a_sweeps_parent_and_jobs_carry_the_tags_and_notes(tmp_path):
    args = ["-m", "debug=fast", "model=dense,mlp64", f"data.path={FIXTURE}", *LABELS, "+tags.api_token=abc"]
    code, out = run_cli(args, tmp_path)
    assert code == 0, out
    [parent], children = sweep_runs(store_of(tmp_path), "mnist-debug")
    jobs = children[parent.info.run_id]
    assert len(jobs) == 2
    for run in [parent, *jobs]:
        assert (run.data.tags["purpose"], run.data.tags["round"], run.data.tags["api_token"]) == (
            "baseline",
            "3",
            "***",
        )
        assert run.data.tags[NOTE_TAG] == "why this run, in short"
    assert "abc" not in out
