"""What a run shows beyond its metrics: images of every few epochs for MLflow's image grid, and the misclassified
test digits as a table with an image per row."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import defaultdict
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml import images
from mnist_tracking.names import EPOCH_CONFUSION_KEY, EPOCH_SAMPLE_KEY
from mnist_tracking.tracking.epoch_images import yield_to_training
from mnist_tracking.train import train
from tests.helpers import FIXTURE, artifact_paths, runs
from tests.test_resume import stopped_run


def image_steps(store: str, run_id: str) -> dict[str, list[int]]:
    """The steps of each image key a run logged, as MLflow names the files (`images/<key>+step+<n>+...png`)."""
    steps = defaultdict(list)
    for path in artifact_paths(mlflow.MlflowClient(store), run_id, "images"):
        found = re.fullmatch(r"images/(.+)\+step\+(\d+)\+timestamp\+\d+\+[-0-9a-f]+\.png", path)
        if found:
            steps[found[1]].append(int(found[2]))
    return {key: sorted(values) for key, values in steps.items()}


@pytest.mark.parametrize(("every", "epochs", "steps"), [("1", 3, [0, 1, 2]), ("2", 5, [1, 3, 4]), ("0", 2, [])])
def test_images_every_few_epochs_one_per_key_and_step(make_cfg, store, every, epochs, steps):
    train(make_cfg(f"mlflow.log_images_every={every}", f"trainer.epochs={epochs}"))
    [run] = runs(store)
    expected = {EPOCH_SAMPLE_KEY: steps, EPOCH_CONFUSION_KEY: steps} if steps else {}
    assert image_steps(store, run.info.run_id) == expected
    assert (run.data.tags.get("mlflow.loggedImages") == "True") == bool(steps)  # what the UI's image grid looks for


def test_a_resumed_run_has_each_epochs_images_once(make_cfg, store, monkeypatch):
    stopped = stopped_run(make_cfg, store, monkeypatch, "trainer.epochs=3", epoch=1)
    assert image_steps(store, stopped.info.run_id) == {EPOCH_SAMPLE_KEY: [0, 1], EPOCH_CONFUSION_KEY: [0, 1]}
    train(make_cfg("trainer.epochs=3"))
    [run] = runs(store)
    assert run.info.status == "FINISHED"
    assert image_steps(store, run.info.run_id) == {EPOCH_SAMPLE_KEY: [0, 1, 2], EPOCH_CONFUSION_KEY: [0, 1, 2]}


def test_images_leave_training_as_it_was(make_cfg, store):
    with_images = train(make_cfg("model=cnn", "data.limit_train=400", "mlflow.log_images_every=1"))
    without = train(make_cfg("model=cnn", "data.limit_train=400", "mlflow.log_images_every=0", "trainer.resume=false"))
    for name in ("loss", "val_accuracy", "test_accuracy"):  # dropout's random state included
        assert with_images[name] == pytest.approx(without[name], abs=1e-6), name


def test_the_confusion_image_shades_counts_and_the_sample_marks_mistakes():
    matrix = images.confusion_matrix(np.array([[3, 0, 0], [0, 1, 1], [0, 0, 1]]), "t")
    assert matrix.mode == "P"  # one byte a pixel: cheap to encode every epoch
    drawn = np.asarray(matrix.convert("RGB"))
    margin, cell = 2 * images.CAPTION + 8, images.MATRIX_CELL
    corner = drawn[margin + 2, margin + 2].astype(int)  # 3 of class 0 right: the darkest cell
    empty = drawn[margin + 2, margin + 2 * cell + 2].astype(int)  # class 0 never predicted as 2
    assert corner.sum() < empty.sum()
    digits = np.random.default_rng(0).random((4, 8, 8))
    grid = images.DigitGrid(digits, np.array([1, 2, 3, 4]))
    right = np.asarray(grid(np.array([1, 2, 3, 4]), "t").convert("RGB"))
    wrong = np.asarray(grid(np.array([1, 2, 3, 5]), "t").convert("RGB"))
    red = lambda image: np.count_nonzero((image[..., 0] > 150) & (image[..., 1] < 100))  # noqa: E731
    assert red(right) == 0 < red(wrong)


@pytest.mark.parametrize("limit", ["null", "20"])
def test_the_misclassified_test_digits_are_a_table_with_an_image_per_row(make_cfg, store, tmp_path, limit):
    metrics = train(make_cfg(f"mlflow.misclassified_table_rows={limit}"))
    [run] = runs(store)
    client = mlflow.MlflowClient(store)
    path = client.download_artifacts(run.info.run_id, "evaluation/misclassified.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    assert table["columns"] == ["test_index", "image", "true", "predicted", "probability"]
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    with np.load(FIXTURE) as data:
        x_test, y_test = data["x_test"], data["y_test"]
    wrong = round((1 - metrics["test_accuracy"]) * len(y_test))
    assert wrong > 20 and len(rows) == (wrong if limit == "null" else 20)
    surest = [row["probability"] for row in rows]
    assert surest == sorted(surest, reverse=True)  # the mistakes the model was surest of first
    for row in rows[:5]:
        assert row["true"] == y_test[row["test_index"]] != row["predicted"] and 0 < row["probability"] <= 1
        assert row["image"]["type"] == "image"  # MLflow's image column: the UI shows the picture in the table
        png = client.download_artifacts(run.info.run_id, row["image"]["filepath"], str(tmp_path))
        assert np.array_equal(np.asarray(Image.open(png)), x_test[row["test_index"]])  # the digit's own pixels


def test_without_confusion_counts_the_validation_set_is_predicted_again_with_a_warning(caplog):
    import keras

    from mnist_tracking.ml.fit import compile_model
    from mnist_tracking.ml.mnist import load_mnist
    from mnist_tracking.ml.models import mlp
    from mnist_tracking.tracking.epoch_images import EpochImages

    data = load_mnist(str(FIXTURE), "standard", 0.25, None, None)
    model = mlp(8, "relu", data.input_shape, data.num_classes)
    compile_model(model, keras.optimizers.SGD(0.01), data, fast=False)  # no ConfusionCounts
    shown = EpochImages(data.x_val, data.y_val)
    for _ in range(2):
        predicted, counts = shown.capture(model, {"val_loss": 1.0})
    guesses = model.predict(data.x_val, verbose=0).argmax(axis=1)
    assert counts.sum() == len(data.x_val) and np.trace(counts) == np.sum(guesses == data.y_val.argmax(axis=1))
    assert np.array_equal(predicted, guesses[shown.sample])
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1  # warned once
    assert "no ConfusionCounts" in caplog.records[0].message


def test_the_image_thread_runs_only_on_idle_cores():
    policy: list[int] = []
    thread = threading.Thread(target=lambda: (yield_to_training(), policy.append(os.sched_getscheduler(0))))
    thread.start()
    thread.join()
    assert policy == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the thread's own policy, not the process's


def test_a_negative_image_interval_is_refused_before_any_run(make_cfg, store):
    with pytest.raises(ConfigError, match=r"mlflow.log_images_every=-1 is invalid: use a whole number of epochs >= 0"):
        train(make_cfg("mlflow.log_images_every=-1"))
    assert runs(store) == []
