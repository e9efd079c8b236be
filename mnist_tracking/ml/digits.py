"""scikit-learn's handwritten digits: 1,797 images of 8x8 pixels (0-16), shipped with scikit-learn, no download
(conf/data/digits.yaml). A second dataset through the same seam as MNIST: one function and one YAML file."""

from __future__ import annotations

import numpy as np

from mnist_tracking.ml.data import Dataset, from_arrays


def digits(
    normalization: str = "standard",
    batch_size: int = 32,
    validation_split: float = 0.25,
    test_split: float = 0.2,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """`sklearn.datasets.load_digits`, split into training and test sets by `train_test_split` (stratified, with
    a fixed random state: the same test set for every run and seed); the last `validation_split` of the
    training set held out. "standard" normalization uses the training images' own mean and std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_split, random_state=0, stratify=labels
    )
    scaled = x_train[:limit_train] / 16.0
    return from_arrays(
        "digits",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        max_value=16,
        mean=float(scaled.mean()),
        std=float(scaled.std()),
        normalization=normalization,
        batch_size=batch_size,
        validation_split=validation_split,
        limit_train=limit_train,
        limit_test=limit_test,
        source="sklearn.datasets.load_digits",
    )
