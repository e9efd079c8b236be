"""Every group option composes and builds; Hydra rejects unknown options with the valid ones."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from hydra.types import RunMode
from hydra.utils import instantiate

from mnist_tracking.runtime.job import run_name
from tests.helpers import CONF_DIR, compose_config

OPTIONS = sorted(
    (group.name, option.stem) for group in CONF_DIR.iterdir() if group.is_dir() for option in group.glob("*.yaml")
)


def test_every_group_has_its_options():
    assert {("model", m) for m in ("dense", "mlp64", "mlp", "cnn")} <= set(OPTIONS)
    assert {
        ("optimizer", "sgd"),
        ("optimizer", "adam"),
        ("data", "mnist"),
        ("trainer", "default"),
        ("mlflow", "default"),
    } <= set(OPTIONS)


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_each_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    # Global overlays (experiment, hparams_search, debug, local) set keys across groups, not a node of their own.
    if not (CONF_DIR / group / f"{option}.yaml").read_text().startswith("# @package _global_"):
        assert cfg[group] is not None
    if group == "optimizer":
        assert cfg.optimizer.learning_rate > 0


def test_study_defaults():
    cfg = compose_config([])
    assert (cfg.seed, cfg.data.batch_size, cfg.data.validation_split, cfg.data.path) == (42, 32, 0.25, None)
    assert (cfg.trainer.epochs, cfg.optimizer.learning_rate, cfg.mlflow.experiment_name) == (30, 0.01, "mnist")
    assert (
        cfg.data.normalization == "standard"
        and cfg.mlflow.tracking_uri is None
        and cfg.optimized_metric == "val_accuracy"
    )


@pytest.mark.parametrize(("option", "params"), [("dense", 7_850), ("mlp64", 50_890), ("mlp", 109_386), ("cnn", 34_826)])
def test_models_build_with_expected_sizes(option, params):
    model = instantiate(
        compose_config([f"model={option}"]).model, input_shape=(28, 28), num_classes=10, _convert_="all"
    )
    assert model.count_params() == params
    assert model.output_shape == (None, 10)


MNIST = {"input_shape": (28, 28), "num_classes": 10}  # what train() passes a builder from the dataset


def test_mlp_width_and_depth_from_hidden_units():
    wide = instantiate(compose_config(["model=mlp", "model.hidden_units=32"]).model, **MNIST, _convert_="all")
    deep = instantiate(compose_config(["model=mlp", "model.hidden_units=[32,16,8]"]).model, **MNIST, _convert_="all")
    assert [layer.units for layer in wide.layers[1:]] == [32, 10]
    assert [layer.units for layer in deep.layers[1:]] == [32, 16, 8, 10]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizers_take_the_configured_learning_rate(optimizer):
    opt = instantiate(compose_config([f"optimizer={optimizer}", "optimizer.learning_rate=0.123"]).optimizer)
    assert opt.learning_rate.numpy() == pytest.approx(0.123)


@pytest.mark.parametrize(("group", "valid"), [("model", "cnn\n\tdense\n\tmlp\n\tmlp64"), ("optimizer", "adam\n\tsgd")])
def test_unknown_option_names_the_valid_ones(group, valid):
    with pytest.raises(MissingConfigException) as info:
        compose_config([f"{group}=nope"])
    assert f"Could not find '{group}/nope'" in str(info.value)
    assert valid in str(info.value)


def test_optuna_search_space():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    # The plugin's, continuing stopped searches.
    assert sweeper._target_ == "hydra_plugins.mnist_tracking_search.resumable_optuna_sweeper.ResumableOptunaSweeper"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 42
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val_accuracy"
    assert sweeper.params == {
        "optimizer.learning_rate": "tag(log, interval(0.001, 0.3))",
        "model.hidden_units": "choice(32, 64, 128, 256)",
        "data.batch_size": "choice(32, 64, 128)",
    }
    assert cfg.hydra.callbacks.mlflow_sweep._target_ == "mnist_tracking.sweeps.callback.MlflowSweepCallback"


def test_optuna_direction_is_the_root_configs():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hparams_search=optuna", "optimized_metric=val_loss", "optimized_direction=minimize"],
            return_hydra_config=True,
        )
    assert cfg.hydra.sweeper.direction == "minimize"


def test_the_study_is_an_experiment_file():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=study"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN  # a sweep without -m
    assert cfg.hydra.sweeper.params == {"model": "dense,mlp64"}
    assert (cfg.seed, cfg.data.batch_size, cfg.data.validation_split, cfg.data.normalization) == (
        42,
        32,
        0.25,
        "standard",
    )
    assert (cfg.trainer.epochs, cfg.optimizer._target_, cfg.optimizer.learning_rate, cfg.optimizer.momentum) == (
        30,
        "keras.optimizers.SGD",
        0.01,
        0.0,
    )
    # What it sets wins over the root config's keys, and the command line wins over it.
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=study", "trainer.epochs=2", "optimizer=adam"])
    assert cfg.trainer.epochs == 2 and cfg.optimizer._target_ == "keras.optimizers.Adam"
    assert cfg.optimizer.learning_rate == 0.001 and "momentum" not in cfg.optimizer  # Adam's own file


def test_run_names_say_what_varies_not_where_it_is_tracked():
    assert (
        run_name(
            [
                "mlflow.tracking_uri=http://u:pw@h:5000",
                "model=dense",
                "data.path=/long/path/mnist.npz",
                "+sweep.skip_finished=true",
                "hydra.launcher.n_jobs=2",
                "trainer.resume=false",
                "++db.password=hunter2",
                "optimizer.learning_rate=0.1",
            ]
        )
        == "data.path=mnist.npz,db.password=***,model=dense,optimizer.learning_rate=0.1"
    )
    assert run_name(["mlflow.experiment_name=x"]) == run_name([]) == "defaults"
