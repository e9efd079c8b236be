"""The champion alias and `python -m mnist_tracking.predict`: which model serves, and what it reads."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from mnist_tracking import predict
from mnist_tracking.errors import ConfigError
from mnist_tracking.tracking.registry import promote_if_better, register_run_model
from mnist_tracking.train import train
from tests.helpers import FIXTURE, runs


def write_pngs(folder: Path, count: int = 5) -> tuple[list[Path], np.ndarray]:
    """The first `count` real test digits of the fixture as 28x28 PNGs, and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    test = np.load(FIXTURE)
    paths = []
    for i in range(count):
        paths.append(folder / f"digit_{i}.png")
        Image.fromarray(test["x_test"][i]).save(paths[-1])
    return paths, test["y_test"][:count]


def test_images_are_read_as_raw_pixels_from_png_npy_and_npz(tmp_path):
    [png], _ = write_pngs(tmp_path, 1)
    test = np.load(FIXTURE)
    images, labels = predict.read_images(png)
    np.testing.assert_array_equal(images, test["x_test"][:1])
    assert labels == [str(png)]
    np.save(tmp_path / "three.npy", test["x_test"][:3])
    images, labels = predict.read_images(tmp_path / "three.npy")
    assert images.shape == (3, 28, 28) and labels[2] == f"{tmp_path / 'three.npy'}[2]"
    images, _ = predict.read_images(FIXTURE)  # Keras's layout: its test images
    np.testing.assert_array_equal(images, test["x_test"])
    np.save(tmp_path / "one.npy", test["x_test"][0].astype(np.float32))  # whole numbers as floats are pixels too
    np.testing.assert_array_equal(predict.read_images(tmp_path / "one.npy")[0], test["x_test"][:1])


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("scaled.npy", np.full((2, 28, 28), 0.5, np.float32), "values in [0, 1] look already scaled"),
        ("wide.npy", np.zeros((2, 28, 29), np.uint8), "shape (2, 28, 29) is invalid: give 28x28 images"),
        (
            "negative.npy",
            np.full((28, 28), -1.0),
            "values from -1.0 to -1.0 are invalid: give raw pixels from 0 to 255",
        ),
        ("two.npz", {"a": np.zeros((28, 28)), "b": np.zeros((28, 28))}, "arrays ['a', 'b'] are ambiguous"),
        ("big.png", np.zeros((32, 32), np.uint8), "a 32x32 image is invalid: give 28x28 pixels"),
        ("digits.jpg", None, "a .jpg file is not supported: give .png, .npy, .npz"),
        ("missing.npy", None, "no such file"),
    ],
)
def test_bad_images_are_refused_with_what_would_do(tmp_path, name, array, message):
    path = tmp_path / name
    if isinstance(array, dict):
        np.savez(path, **array)
    elif name.endswith(".png"):
        Image.fromarray(array).save(path)
    elif array is not None:
        np.save(path, array)
    with pytest.raises(ConfigError) as caught:
        predict.read_images(path, (28, 28))
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_champion_moves_only_for_a_better_model_and_predict_uses_it(make_cfg, store, tmp_path, capsys):
    client = mlflow.MlflowClient(store)
    decisions = []
    for overrides in (
        ["optimizer.learning_rate=0.001", "trainer.epochs=1"],  # the first champion
        ["optimizer.learning_rate=0.00001", "trainer.epochs=1"],  # worse
        ["optimizer.learning_rate=0.05", "trainer.epochs=3"],
    ):  # better
        train(make_cfg(*overrides))
        run = runs(store)[0]  # the latest
        version = register_run_model(client, run.info.run_id, "mnist-best")
        decisions.append(promote_if_better(client, version, "val_accuracy", minimize=False))
        champion = client.get_model_version_by_alias("mnist-best", "champion")
        assert str(champion.version) == ("1" if len(decisions) < 3 else "3")
    assert decisions[0] == (True, "mnist-best v1 is the first champion")
    promoted, reason = decisions[1]
    assert not promoted and reason.startswith("mnist-best v2 does not beat champion v1 (val_accuracy ")
    assert "test_accuracy" in reason and "on the same test set" in reason and reason.endswith("alias kept there")
    assert decisions[2][0] and decisions[2][1].startswith("mnist-best v3 beats champion v1")

    # predict's default: the champion, found by the name the sweeps register under, fed raw PNG pixels.
    paths, _ = write_pngs(tmp_path / "pngs")
    capsys.readouterr()  # what training printed
    predict.main([*map(str, paths), "--tracking-uri", store])
    printed = capsys.readouterr().out.splitlines()
    mlflow.set_tracking_uri(store)
    expected = mlflow.pyfunc.load_model("models:/mnist-best/3").predict(np.load(FIXTURE)["x_test"][:5])
    assert printed == [f"{p}: {int(row.argmax())} (p={row.max():.4f})" for p, row in zip(paths, expected)]


def test_predict_says_when_there_is_no_champion(store, tmp_path):
    train_store = Path(store.removeprefix("sqlite:///"))
    train_store.parent.mkdir(parents=True)
    mlflow.MlflowClient(store).search_experiments()  # an empty store
    paths, _ = write_pngs(tmp_path / "pngs", 1)
    with pytest.raises(SystemExit, match=r"cannot load models:/mnist-best@champion .*or pass --model"):
        predict.main([str(paths[0]), "--tracking-uri", store])


def test_a_model_that_takes_normalized_images_is_fed_as_its_run_normalized(store):
    import keras

    mlflow.set_tracking_uri(store)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    pixels = np.load(FIXTURE)["x_test"][:20]
    scaled = pixels.astype(np.float32) / 255.0
    with mlflow.start_run() as run:  # as runs logged models before they took raw pixels
        mlflow.log_param("data.normalization", "unit")
        mlflow.keras.log_model(
            model, name="model", signature=mlflow.models.infer_signature(scaled, model.predict(scaled, verbose=0))
        )
    probabilities = predict.predict(f"runs:/{run.info.run_id}/model", pixels)
    np.testing.assert_allclose(probabilities, model.predict(scaled, verbose=0), rtol=1e-5)
