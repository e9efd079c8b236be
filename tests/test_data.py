"""MNIST loading: scaling, one-hot labels, Keras's validation split, limits."""

from __future__ import annotations

import os
import shutil

import numpy as np

from mnist_tracking.ml.mnist import load_mnist
from tests.helpers import FIXTURE


def test_fixture_is_real_mnist():
    raw = np.load(FIXTURE)
    # The first ten labels of MNIST's train and test sets (shared/data/README.md).
    assert raw["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert FIXTURE.stat().st_size < 1_000_000


def test_split_scaling_and_one_hot():
    raw = np.load(FIXTURE)
    data = load_mnist(str(FIXTURE), "unit", validation_split=0.25, limit_train=None, limit_test=None)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (1500, 500, 500)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    assert data.y_train.shape == (1500, 10) and np.all(data.y_train.sum(axis=1) == 1)
    # Validation is the last quarter of the training set, in order, as Keras's fit(validation_split=) takes it.
    np.testing.assert_array_equal(data.y_val.argmax(axis=1), raw["y_train"][1500:])
    np.testing.assert_allclose(data.x_val[0], raw["x_train"][1500] / 255.0, rtol=1e-6)
    assert data.x_train.ctypes.data % 64 == 0  # so that JAX on CPU uses the images in place, without a copy


def test_standard_normalization_uses_mnist_mean_and_std():
    unit = load_mnist(str(FIXTURE), "unit", validation_split=0.25, limit_train=None, limit_test=None)
    standard = load_mnist(str(FIXTURE), "standard", validation_split=0.25, limit_train=None, limit_test=None)
    np.testing.assert_allclose(standard.x_test, (unit.x_test - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    assert abs(standard.x_train.mean()) < 0.05 and abs(standard.x_train.std() - 1) < 0.05  # real MNIST statistics


def test_limits_apply_before_the_split():
    data = load_mnist(str(FIXTURE), "standard", validation_split=0.2, limit_train=100, limit_test=30)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (80, 20, 30)


def test_a_process_loads_the_same_data_once_read_only_and_again_when_the_file_changes(tmp_path):
    copy = tmp_path / "mnist.npz"
    shutil.copy(FIXTURE, copy)
    first = load_mnist(str(copy), "standard", 0.25, None, None)
    again = load_mnist(str(copy), "standard", 0.25, None, None)
    assert again is first  # a serial sweep's next job pays nothing
    assert not first.x_train.flags.writeable  # and cannot change it for the job after it
    assert load_mnist(str(copy), "unit", 0.25, None, None) is not first  # other settings: loaded for them
    os.utime(copy, ns=(0, 0))  # the file changed (its mtime): read again
    reloaded = load_mnist(str(copy), "standard", 0.25, None, None)
    assert reloaded is not first
    np.testing.assert_array_equal(reloaded.x_train, first.x_train)
