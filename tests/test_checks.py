"""Every bad input fails before training with a message naming key, value and what is valid; no run is left."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_tracking.errors import ConfigError
from mnist_tracking.train import train
from tests.helpers import FIXTURE, runs

BAD_VALUES = [
    # (override, text the message must contain)
    ("optimizer.learning_rate=0", "optimizer.learning_rate=0 is invalid: use a number > 0"),
    ("optimizer.learning_rate=-0.1", "optimizer.learning_rate=-0.1 is invalid"),
    ("optimizer=adam optimizer.learning_rate=0", "optimizer.learning_rate=0 is invalid"),
    ("data.batch_size=0", "data.batch_size=0 is invalid: use a whole number >= 1"),
    ("data.batch_size=2.5", "data.batch_size=2.5 is invalid"),
    ("data.validation_split=0", "data.validation_split=0 is invalid: use a fraction strictly between 0 and 1"),
    ("data.validation_split=1.0", "data.validation_split=1.0 is invalid"),
    ("data.validation_split=-0.5", "data.validation_split=-0.5 is invalid"),
    ("trainer.epochs=0", "trainer.epochs=0 is invalid: use a whole number >= 1"),
    ("model=mlp model.hidden_units=0", "model.hidden_units=0 is invalid: use a whole number >= 1"),
    ("model=mlp model.hidden_units=[64,0]", "model.hidden_units=[64, 0] is invalid"),
    ("model=mlp model.hidden_units=wide", "model.hidden_units='wide' is invalid"),
    ("data.limit_train=0", "data.limit_train=0 is invalid: use null (all images) or a whole number >= 1"),
    ("model=cnn model.filters=[]", "model.filters=[] is invalid"),
    ("model=cnn model.dropout=1.0", "model.dropout=1.0 is invalid"),
    ("optimized_metric=f1", "optimized_metric='f1' is invalid: use one of val_accuracy"),
    ("optimized_direction=up", "optimized_direction='up' is invalid: use one of maximize, minimize"),
    (
        "optimized_metric=val_loss",
        "optimized_direction='maximize' is invalid: optimized_metric=val_loss is a loss: "
        "use optimized_direction=minimize",
    ),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size=0 is invalid: use a whole number >= 1"),
    ("backend=torch", "backend='torch' is invalid: use one of tensorflow, jax"),
    ("mlflow.system_metrics_interval=0", "mlflow.system_metrics_interval=0 is invalid: use a number of seconds > 0"),
    ("mlflow.log_system_metrics=maybe", "mlflow.log_system_metrics='maybe' is invalid: use true or false"),
    ("optimizer.learning_rate=nan", "optimizer.learning_rate=nan is invalid: use a number > 0"),
    ("optimizer.learning_rate=inf", "optimizer.learning_rate=inf is invalid: use a number > 0"),
    ("optimizer.momentum=nan", "optimizer.momentum=nan is invalid: use a number from 0 to 1"),
    ("optimizer.momentum=1.5", "optimizer.momentum=1.5 is invalid"),
    ("model=cnn model.dropout=nan", "model.dropout=nan is invalid"),
    ("data.validation_split=nan", "data.validation_split=nan is invalid"),
    ("data.validation_split=-inf", "data.validation_split=-inf is invalid"),
    ("trainer.checkpoint_every=-1", "trainer.checkpoint_every=-1 is invalid: use a whole number of epochs >= 0"),
    ("trainer.resume=yes", "trainer.resume='yes' is invalid: use auto, false, or the 32-character id"),
    ("data.normalization=zscore", "data.normalization='zscore' is invalid: use one of standard, unit"),
    ("seed=-1", "seed=-1 is invalid: use a whole number from 0 to 2**32 - 1"),
    ("data.limit_train=1", "leaves 0 of 1 images for training"),
    ("~optimized_metric", "optimized_metric is missing: use one of val_accuracy"),
    ("~trainer.epochs", "trainer.epochs is missing: use a whole number >= 1"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_fails_before_any_run(make_cfg, store, override, message):
    with pytest.raises(ConfigError) as info:
        train(make_cfg(*override.split()))
    assert message in str(info.value)
    assert runs(store) == []


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_files(tmp_path):
    good = dict(np.load(FIXTURE))
    text = tmp_path / "mnist.txt"
    text.write_text("not an archive")
    return {
        "missing": (tmp_path / "nowhere.npz", "no such file"),
        "not npz": (text, "not an .npz archive"),
        "corrupt npz": (tmp_path / "corrupt.npz", "not an .npz archive"),
        "lacks arrays": (
            _npz(tmp_path / "partial.npz", x_train=good["x_train"], y_train=good["y_train"]),
            "it lacks ['x_test', 'y_test']",
        ),
        "wrong shape": (
            _npz(tmp_path / "flat.npz", **{**good, "x_train": good["x_train"].reshape(-1, 784)}),
            "x_train is uint8[2000, 784], expected uint8[n, 28, 28]",
        ),
        "wrong dtype": (
            _npz(tmp_path / "float.npz", **{**good, "x_test": good["x_test"].astype("float32")}),
            "x_test is float32[500, 28, 28], expected uint8[n, 28, 28]",
        ),
        "count mismatch": (
            _npz(tmp_path / "short.npz", **{**good, "y_train": good["y_train"][:10]}),
            "x_train has 2000 images and y_train 10 labels",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing", "not npz", "corrupt npz", "lacks arrays", "wrong shape", "wrong dtype", "count mismatch"]
)
def test_bad_data_path_fails_before_any_run(make_cfg, store, tmp_path, case):
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(ConfigError) as info:
        train(make_cfg(f"data.path={path}"))
    assert f"data.path={str(path)!r} is invalid" in str(info.value)
    assert message in str(info.value)
    assert runs(store) == []


def test_earlier_runs_survive_a_bad_input(make_cfg, store):
    train(make_cfg("trainer.epochs=1"))
    with pytest.raises(ConfigError):
        train(make_cfg("optimizer.learning_rate=-1"))
    assert [r.info.status for r in runs(store)] == ["FINISHED"]


@pytest.mark.backends
def test_a_process_keeps_the_keras_backend_it_started_with():
    import keras

    from mnist_tracking.runtime.backend import use_backend

    other = "tensorflow" if keras.backend.backend() == "jax" else "jax"
    with pytest.raises(
        ConfigError,
        match=f"backend='{other}' is invalid here: this process already runs Keras on '{keras.backend.backend()}'",
    ):
        use_backend(other, None)
    use_backend(keras.backend.backend(), None)  # the same one is fine
