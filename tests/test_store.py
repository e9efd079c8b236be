"""A new local store is a copy of an empty one that an earlier command kept, when there is one: MLflow's migrations
run once per MLflow version and user, not once per launch directory."""

from __future__ import annotations

import logging
import sqlite3

import mlflow
import mlflow.store.db.utils
import pytest

from mnist_tracking.runtime import cache, speedups
from mnist_tracking.tracking import store


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """Where the empty store is kept, in a user cache of this test's own (none is kept there yet)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mnist-tracking" / "mlflow" / f"store-{mlflow.__version__}.db"


@pytest.fixture
def migrations(monkeypatch) -> list[object]:
    """Each time MLflow builds a store's tables step by step (its migrations), recorded."""
    calls = []
    initialize = mlflow.store.db.utils._initialize_tables
    monkeypatch.setattr(
        mlflow.store.db.utils, "_initialize_tables", lambda engine: (calls.append(engine), initialize(engine))
    )
    return calls


def new_store(folder, monkeypatch) -> tuple[str, str]:
    """A store and its `mnist` experiment made as a command launched in `folder` makes them; (URI, experiment id)."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # which an earlier test's mlflow.set_tracking_uri set
    uri = store.resolve_tracking_uri(None, folder)
    return uri, store.prepare_experiment(uri, "mnist")


def experiments(uri: str) -> dict[str, str]:
    """Each experiment's name and artifact location."""
    return {e.name: e.artifact_location for e in mlflow.MlflowClient(uri).search_experiments()}


def test_the_second_new_store_is_a_copy_of_the_first_less_its_experiments(tmp_path, monkeypatch, kept, migrations):
    first, _ = new_store(tmp_path / "a", monkeypatch)
    assert len(migrations) == 1 and kept.is_file()
    with sqlite3.connect(kept) as copy:
        assert copy.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)

    second, experiment_id = new_store(tmp_path / "b", monkeypatch)
    assert len(migrations) == 1  # copied, not built
    # MLflow's `Default` and this project's experiment, each where they would be in a store MLflow built here.
    assert experiments(second) == {
        "Default": str(tmp_path / "b" / "mlruns" / "0"),
        "mnist": (tmp_path / "b" / "mlruns" / "artifacts").as_uri(),
    }
    assert experiments(first)["Default"] == str(tmp_path / "a" / "mlruns" / "0")
    client = mlflow.MlflowClient(second)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.9)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.9}


def test_a_kept_store_this_mlflow_cannot_open_is_built_again(tmp_path, monkeypatch, kept, migrations, caplog):
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"not a database")
    with caplog.at_level(logging.WARNING, "mnist_tracking.tracking.store"):
        uri, _ = new_store(tmp_path / "a", monkeypatch)
    assert "does not open with this MLflow" in caplog.text
    assert len(migrations) == 1 and set(experiments(uri)) == {"Default", "mnist"}
    new_store(tmp_path / "b", monkeypatch)
    assert len(migrations) == 1  # the broken copy was replaced by a good one


def test_a_cache_that_cannot_be_written_leaves_the_store_as_mlflow_builds_it(tmp_path, monkeypatch, migrations, caplog):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    with caplog.at_level(logging.WARNING, "mnist_tracking.tracking.store"):
        uri, _ = new_store(tmp_path / "a", monkeypatch)
    assert "Could not keep an empty store" in caplog.text
    assert len(migrations) == 1 and set(experiments(uri)) == {"Default", "mnist"}
    assert not list((tmp_path / "a" / "mlruns").glob(".*.tmp"))


def test_the_cache_folder_follows_xdg_cache_home_and_jaxs_own_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    for unset in (None, ""):  # unset or empty: the XDG default
        if unset is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert cache.folder() == tmp_path / "home" / ".cache" / "mnist-tracking"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speedups.empty_store_path().parent == tmp_path / "xdg" / "mnist-tracking" / "mlflow"
    assert cache.jax_compilation_cache() == tmp_path / "xdg" / "mnist-tracking" / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.jax_compilation_cache() == tmp_path / "mine"
