"""Debug configs (debug=fast, debug=overfit) record apart from the real runs; conf/local/default.yaml applies when
present."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from mnist_tracking.config.help import config_groups
from mnist_tracking.train import train
from tests.helpers import BACKEND, CONF_DIR, FIXTURE, compose_config, run_cli, runs, store_of, sweep_runs


def debug_cfg(store: str, *overrides: str):
    """`debug=...` on the fixture, logging to `store`, with no trainer.epochs of the tests' own (the file's wins)."""
    return compose_config([f"data.path={FIXTURE}", f"backend={BACKEND}", f"mlflow.tracking_uri={store}", *overrides])


def test_debug_fast_trains_one_epoch_on_a_slice_in_its_own_experiment(store):
    # Samples every 0.1 s, were they on: only debug=fast's log_system_metrics=false keeps them out.
    train(debug_cfg(store, "debug=fast", "mlflow.system_metrics_interval=0.1"))
    assert runs(store, "mnist") == []
    [run] = runs(store, "mnist-debug")
    assert run.info.status == "FINISHED"
    assert (run.data.params["data.limit_train"], run.data.params["data.limit_test"]) == ("1000", "500")
    assert len(mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "accuracy")) == 1
    assert not [name for name in run.data.metrics if name.startswith("system/")]


def test_the_command_line_wins_over_a_debug_file():
    cfg = compose_config(["debug=fast", "trainer.epochs=3", "mlflow.experiment_name=mine"])
    assert (cfg.trainer.epochs, cfg.mlflow.experiment_name, cfg.data.limit_train) == (3, "mine", 1000)


def test_debug_overfit_learns_its_few_hundred_images(store):
    cfg = debug_cfg(store, "debug=overfit")
    assert cfg.data.limit_train <= 500 and cfg.model.hidden_units == 64  # the default model, mlp64
    metrics = train(cfg)
    assert metrics["accuracy"] >= 0.99  # the last epoch's training accuracy
    assert runs(store, "mnist") == [] and len(runs(store, "mnist-debug")) == 1


@pytest.mark.slow
def test_a_debug_fast_sweep_registers_nothing_and_stays_out_of_mnist(tmp_path):
    code, out = run_cli(["-m", "debug=fast", "model=dense,mlp64", f"data.path={FIXTURE}"], tmp_path)
    assert code == 0, out
    store = store_of(tmp_path)
    assert runs(store, "mnist") == []
    [parent], children = sweep_runs(store, "mnist-debug")
    assert len(children[parent.info.run_id]) == 2 and parent.info.status == "FINISHED"
    assert "registered_model" not in parent.data.tags
    assert mlflow.MlflowClient(store).search_registered_models() == []


def compose_from(conf_dir, *overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture
def conf_copy(tmp_path):
    """A copy of conf/ with no local/default.yaml (whatever this checkout has)."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "local" / "default.yaml").unlink(missing_ok=True)
    return conf


def test_a_local_config_applies_when_present_and_the_command_line_wins(conf_copy):
    assert compose_from(conf_copy).data.path is None
    assert "(absent;" in config_groups(conf_copy)
    (conf_copy / "local" / "default.yaml").write_text(
        "# @package _global_\ndata:\n  path: /data/mnist.npz\nmlflow:\n  tracking_uri: http://mlflow.team:5000\n"
    )
    cfg = compose_from(conf_copy)
    assert (cfg.data.path, cfg.mlflow.tracking_uri) == ("/data/mnist.npz", "http://mlflow.team:5000")
    assert compose_from(conf_copy, "data.path=/other.npz").data.path == "/other.npz"
    assert "(present;" in config_groups(conf_copy)


def test_debug_wins_over_a_local_config(conf_copy):
    (conf_copy / "local" / "default.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 7\n")
    assert compose_from(conf_copy).trainer.epochs == 7
    assert compose_from(conf_copy, "debug=fast").trainer.epochs == 1


def test_the_local_example_sets_nothing():
    assert compose_config(["local=example"]) == compose_config([])
