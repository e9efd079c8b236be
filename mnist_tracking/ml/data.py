"""What a dataset gives the rest of the project: its splits, shapes, class count and normalization.

A dataset is a config in conf/data/ whose `_target_` names a builder that returns a `Dataset`, usually through
`from_arrays` (see mnist_tracking/ml/mnist.py and digits.py). Models, figures, the logged model's signature, the
MLflow dataset names and `predict` read these values; nothing else knows which dataset it is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from mnist_tracking.errors import ConfigError

log = logging.getLogger(__name__)

NORMALIZATIONS = ("standard", "unit")


@dataclass(frozen=True)
class Dataset:
    """Images as normalized float32 of shape (n, *input_shape); labels one-hot float32 (n, num_classes).

    `scale` and `offset` turn raw pixels (integers from 0 to `max_value`) into what the model sees
    (`x * scale + offset`): the logged model applies them itself. `source` is where the images came from;
    `digests` identify each split's exact contents ("training", "validation", "testing").
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    max_value: int
    scale: float
    offset: float
    batch_size: int
    source: str
    digests: dict[str, str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape, as the model takes it."""
        return tuple(self.x_train.shape[1:])

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(images, labels) by MLflow dataset context: training, validation, testing."""
        return {
            "training": (self.x_train, self.y_train),
            "validation": (self.x_val, self.y_val),
            "testing": (self.x_test, self.y_test),
        }


def scale_offset(normalization: str, max_value: int, mean: float, std: float) -> tuple[float, float]:
    """`normalize` as one multiply-add on raw pixels (x * scale + offset), for the logged model's Rescaling layer."""
    if normalization == "standard":
        return 1 / (max_value * std), -mean / std
    return 1 / max_value, 0.0


def normalize(x: np.ndarray, normalization: str, max_value: int, mean: float, std: float) -> np.ndarray:
    """Raw pixels as the model sees them, float32: scaled to [0, 1] ("unit"), then standardized by the dataset's
    `mean` and `std` of pixels in [0, 1] ("standard")."""
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"data.normalization={normalization!r} is invalid: use one of {', '.join(NORMALIZATIONS)}.")
    out = _aligned_empty(x.shape, np.float32)
    np.divide(x, np.float32(max_value), out=out, dtype=np.float32)
    if normalization == "standard":
        np.subtract(out, mean, out=out)
        np.divide(out, std, out=out)
    return out


def from_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    max_value: int,
    mean: float,
    std: float,
    normalization: str,
    batch_size: int,
    validation_split: float,
    limit_train: int | None,
    limit_test: int | None,
    source: str,
) -> Dataset:
    """A `Dataset` from raw images (integers 0 to `max_value`) and integer labels: the first `limit_train`
    training and `limit_test` test images, normalized, labels one-hot, and the last `validation_split` of the
    training images held out, as Keras's `fit(validation_split=...)` does before any shuffling."""
    x_train, y_train, x_test, y_test = (
        x_train[:limit_train],
        y_train[:limit_train],
        x_test[:limit_test],
        y_test[:limit_test],
    )
    n_train = int(len(x_train) * (1 - validation_split))
    if n_train < 1 or n_train == len(x_train):
        raise ConfigError(
            f"data.validation_split={validation_split!r} leaves {n_train} of {len(x_train)} images for training "
            f"and {len(x_train) - n_train} for validation; both need at least one (raise data.limit_train or change the split)."
        )
    log.info("%s: %d train, %d validation, %d test images", name, n_train, len(x_train) - n_train, len(x_test))
    digests = {
        "training": _digest(x_train[:n_train], y_train[:n_train], normalization),
        "validation": _digest(x_train[n_train:], y_train[n_train:], normalization),
        "testing": _digest(x_test, y_test, normalization),
    }
    images = normalize(x_train, normalization, max_value, mean, std)
    labels = np.eye(num_classes, dtype=np.float32)[y_train]
    return Dataset(
        name,
        images[:n_train],
        labels[:n_train],
        images[n_train:],
        labels[n_train:],
        normalize(x_test, normalization, max_value, mean, std),
        np.eye(num_classes, dtype=np.float32)[y_test],
        num_classes,
        max_value,
        *scale_offset(normalization, max_value, mean, std),
        batch_size,
        source,
        digests,
    )


def _aligned_empty(shape: tuple[int, ...], dtype: type, alignment: int = 64) -> np.ndarray:
    """An uninitialized array whose data starts on an `alignment`-byte boundary: JAX on CPU uses such an array in
    place instead of copying it (the training images, every job)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _digest(x: np.ndarray, y: np.ndarray, normalization: str) -> str:
    """A hash of a split's raw pixels, labels and normalization: the whole content."""
    h = hashlib.blake2b(normalization.encode(), digest_size=8)
    for array in (x, y):
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def load_dataset(config: object) -> Dataset:
    """The `Dataset` a `data` config's `_target_` builds; a ConfigError of the builder (a bad file, a split that
    leaves nothing) comes out as itself, not wrapped by Hydra."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        data = instantiate(config, _convert_="all")
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise
    if not isinstance(data, Dataset):
        raise ConfigError(
            f"data._target_={config.get('_target_')!r} is invalid: it returned a "  # type: ignore[attr-defined]
            f"{type(data).__name__}; a dataset builder returns mnist_tracking.ml.data.Dataset."
        )
    return data
