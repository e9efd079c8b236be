"""MNIST: Keras's cache or a local mnist.npz, checked, then a `Dataset` (conf/data/mnist.yaml)."""

from __future__ import annotations

import functools
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml.data import Dataset, from_arrays, normalize

log = logging.getLogger(__name__)

NUM_CLASSES = 10
# MNIST's training-set pixel mean and standard deviation after scaling to [0, 1] (the usual constants).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
ARRAYS = {  # name -> (shape after the first axis, dtype), Keras's mnist.npz layout
    "x_train": ((28, 28), np.uint8),
    "y_train": ((), np.uint8),
    "x_test": ((28, 28), np.uint8),
    "y_test": ((), np.uint8),
}


def mnist(
    path: str | None = None,
    normalization: str = "standard",
    batch_size: int = 32,
    validation_split: float = 0.25,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """MNIST's 60,000 training and 10,000 test digits (28x28, 0-255), the last `validation_split` of the
    (limited) training set held out.

    `path`: a local mnist.npz in Keras's layout; None: Keras's cache, downloaded when absent.
    The last data loaded stays in memory, read-only, for the next job of the same process (a serial sweep) that
    asks for the same file, unchanged since, with the same settings.
    """
    file = Path(path).expanduser().resolve() if path else _keras_cache_file()
    try:
        version = file.stat().st_mtime_ns, file.stat().st_size
    except OSError:  # absent: no cache, so that the error (or Keras's download) happens every time
        return _load(path, normalization, batch_size, validation_split, limit_train, limit_test)
    hits = _load_version.cache_info().hits
    data = _load_version(str(file), version, path, normalization, batch_size, validation_split, limit_train, limit_test)
    if _load_version.cache_info().hits > hits:
        log.info("MNIST: the data an earlier job of this process loaded (%s, unchanged)", file)
    return data


def load_mnist(
    path: str | None,
    normalization: str,
    validation_split: float,
    limit_train: int | None,
    limit_test: int | None,
    batch_size: int = 32,
) -> Dataset:
    """`mnist`, its arguments in the order the tests and benchmark give them."""
    return mnist(path, normalization, batch_size, validation_split, limit_train, limit_test)


def normalize_images(x: np.ndarray, normalization: str) -> np.ndarray:
    """MNIST pixels as a model trained on MNIST sees them (for models logged before they took raw pixels)."""
    return normalize(x, normalization, 255, MNIST_MEAN, MNIST_STD)


@functools.lru_cache(maxsize=1)
def _load_version(file: str, version: tuple[int, int], *args: object) -> Dataset:
    """`_load`, kept for the next identical call while the resolved `file`'s `version` (mtime, size) is the same."""
    data = _load(*args)  # type: ignore[arg-type]
    for array in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        array.setflags(write=False)  # shared by the jobs of a process: none may change it for the next
    return data


def _load(
    path: str | None,
    normalization: str,
    batch_size: int,
    validation_split: float,
    limit_train: int | None,
    limit_test: int | None,
) -> Dataset:
    arrays = _read_keras_cache() if path is None else _read_npz(Path(path).expanduser())
    source = str(Path(path).expanduser().resolve()) if path else str(_keras_cache_file())
    return from_arrays(
        "mnist",
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        num_classes=NUM_CLASSES,
        max_value=255,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        normalization=normalization,
        batch_size=batch_size,
        validation_split=validation_split,
        limit_train=limit_train,
        limit_test=limit_test,
        source=source,
    )


def _read_keras_cache() -> dict[str, np.ndarray]:
    """Keras's own loader: reads ~/.keras/datasets/mnist.npz, downloading it when absent."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # Keras wraps network failures in several exception types
        raise ConfigError(
            "data.path=None: MNIST is not in Keras's cache (~/.keras/datasets/mnist.npz, or $KERAS_HOME/datasets) "
            f"and downloading it failed ({exc}). Offline, set data.path=/path/to/mnist.npz to a local copy in Keras's layout."
        ) from exc
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _keras_cache_file() -> Path:
    """Where Keras's mnist.load_data() keeps MNIST: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets" / "mnist.npz"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads and checks a local mnist.npz; raises ConfigError naming data.path on any problem."""
    layout = "Keras's mnist.npz layout (x_train/x_test: (n, 28, 28) uint8, y_train/y_test: (n,) uint8 labels 0-9)"
    if not path.is_file():
        raise ConfigError(
            f"data.path={str(path)!r} is invalid: no such file; give a local mnist.npz in {layout}, or null for Keras's cache."
        )
    if path.suffix != ".npz" or not zipfile.is_zipfile(path):
        raise ConfigError(
            f"data.path={str(path)!r} is invalid: not an .npz archive; give a local mnist.npz in {layout}."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(ARRAYS) - set(npz.files))
            if missing:
                raise ConfigError(
                    f"data.path={str(path)!r} is invalid: it lacks {missing} (has {sorted(npz.files)}); expected {layout}."
                )
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"data.path={str(path)!r} is invalid: cannot read it as .npz ({exc}); expected {layout}."
        ) from exc
    for name, (shape, dtype) in ARRAYS.items():
        a = arrays[name]
        if a.ndim != 1 + len(shape) or a.shape[1:] != shape or a.dtype != dtype:
            raise ConfigError(
                f"data.path={str(path)!r} is invalid: {name} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}[n, {', '.join(map(str, shape))}] in {layout}.".replace(
                    ", ]", "]"
                )
            )
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(y) == 0 or y.max() >= NUM_CLASSES:
            raise ConfigError(
                f"data.path={str(path)!r} is invalid: x_{split} has {len(x)} images and y_{split} {len(y)} labels (max {y.max() if len(y) else None}); expected equal non-zero counts and labels 0-9."
            )
    return arrays
