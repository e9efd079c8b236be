"""MNIST loading: Keras's cache or a local mnist.npz, checked, scaled, one-hot, split like Keras."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_tracking.errors import ConfigError

log = logging.getLogger(__name__)

NUM_CLASSES = 10
# MNIST's training-set pixel mean and standard deviation after scaling to [0, 1] (the usual constants).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NORMALIZATIONS = ("standard", "unit")
ARRAYS = {  # name -> (shape after the first axis, dtype), Keras's mnist.npz layout
    "x_train": ((28, 28), np.uint8),
    "y_train": ((), np.uint8),
    "x_test": ((28, 28), np.uint8),
    "y_test": ((), np.uint8),
}


@dataclass(frozen=True)
class MnistData:
    """Images as float32 of shape (n, 28, 28), normalized; labels one-hot float32 (n, 10).

    `source` is the file the images came from; `digests` identify each split's exact contents
    ("training", "validation", "testing"), so that runs on the same data can be told apart from the rest.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    digests: dict[str, str]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads and checks a local mnist.npz; raises ConfigError naming data.path on any problem."""
    layout = "Keras's mnist.npz layout (x_train/x_test: (n, 28, 28) uint8, y_train/y_test: (n,) uint8 labels 0-9)"
    if not path.is_file():
        raise ConfigError(f"data.path={str(path)!r} is invalid: no such file; give a local mnist.npz in {layout}, or null for Keras's cache.")
    if path.suffix != ".npz" or not zipfile.is_zipfile(path):
        raise ConfigError(f"data.path={str(path)!r} is invalid: not an .npz archive; give a local mnist.npz in {layout}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(ARRAYS) - set(npz.files))
            if missing:
                raise ConfigError(f"data.path={str(path)!r} is invalid: it lacks {missing} (has {sorted(npz.files)}); expected {layout}.")
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"data.path={str(path)!r} is invalid: cannot read it as .npz ({exc}); expected {layout}.") from exc
    for name, (shape, dtype) in ARRAYS.items():
        a = arrays[name]
        if a.ndim != 1 + len(shape) or a.shape[1:] != shape or a.dtype != dtype:
            raise ConfigError(f"data.path={str(path)!r} is invalid: {name} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}[n, {', '.join(map(str, shape))}] in {layout}.".replace(", ]", "]"))
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(y) == 0 or y.max() >= NUM_CLASSES:
            raise ConfigError(f"data.path={str(path)!r} is invalid: x_{split} has {len(x)} images and y_{split} {len(y)} labels (max {y.max() if len(y) else None}); expected equal non-zero counts and labels 0-9.")
    return arrays


def _digest(x: np.ndarray, y: np.ndarray, normalization: str) -> str:
    """A hash of a split's raw pixels, labels and normalization: the whole content (~0.05 s for all of MNIST)."""
    h = hashlib.blake2b(normalization.encode(), digest_size=8)
    for array in (x, y):
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


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


def normalize_images(x: np.ndarray, normalization: str) -> np.ndarray:
    """uint8 pixels as the model sees them: float32 in [0, 1] ("unit"), then standardized ("standard")."""
    out = _aligned_empty(x.shape, np.float32)
    np.divide(x, np.float32(255.0), out=out, dtype=np.float32)
    if normalization == "standard":
        np.subtract(out, MNIST_MEAN, out=out)
        np.divide(out, MNIST_STD, out=out)
    return out


def _aligned_empty(shape: tuple[int, ...], dtype: type, alignment: int = 64) -> np.ndarray:
    """An uninitialized array whose data starts on an `alignment`-byte boundary. JAX on CPU uses such an array in
    place instead of copying it (the training images: 141 MB, and ~0.1 s, saved per job)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def pixel_scale_offset(normalization: str) -> tuple[float, float]:
    """`normalize_images` as one multiply-add on raw pixels (x * scale + offset), for a model's own Rescaling layer."""
    if normalization == "standard":
        return 1 / (255.0 * MNIST_STD), -MNIST_MEAN / MNIST_STD
    return 1 / 255.0, 0.0


def _prepare(x: np.ndarray, y: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    return normalize_images(x, normalization), np.eye(NUM_CLASSES, dtype=np.float32)[y]


def load_mnist(path: str | None, normalization: str, validation_split: float, limit_train: int | None,
               limit_test: int | None) -> MnistData:
    """Loads MNIST and holds out the last `validation_split` of the (limited) training set.

    `normalization`: "unit" scales pixels to [0, 1]; "standard" then subtracts MNIST's mean and divides by its std.
    The last data loaded stays in memory, read-only, for the next job of the same process (a serial sweep) that
    asks for the same file, unchanged since, with the same normalization, split and limits.
    """
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"data.normalization={normalization!r} is invalid: use one of {', '.join(NORMALIZATIONS)}.")
    file = Path(path).expanduser().resolve() if path else _keras_cache_file()
    try:
        version = file.stat().st_mtime_ns, file.stat().st_size
    except OSError:  # absent: no cache, so that the error (or Keras's download) happens every time
        return _load(path, normalization, validation_split, limit_train, limit_test)
    hits = _load_version.cache_info().hits
    data = _load_version(str(file), version, path, normalization, validation_split, limit_train, limit_test)
    if _load_version.cache_info().hits > hits:
        log.info("MNIST: the data an earlier job of this process loaded (%s, unchanged)", file)
    return data


@functools.lru_cache(maxsize=1)
def _load_version(file: str, version: tuple[int, int], path: str | None, normalization: str, validation_split: float,
                  limit_train: int | None, limit_test: int | None) -> MnistData:
    """`_load`, kept for the next identical call while the resolved `file`'s `version` (mtime, size) is the same."""
    data = _load(path, normalization, validation_split, limit_train, limit_test)
    for array in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        array.setflags(write=False)  # shared by the jobs of a process: none may change it for the next
    return data


def _load(path: str | None, normalization: str, validation_split: float, limit_train: int | None,
          limit_test: int | None) -> MnistData:
    arrays = _read_keras_cache() if path is None else _read_npz(Path(path).expanduser())
    source = str(Path(path).expanduser().resolve()) if path else str(_keras_cache_file())
    raw_train = arrays["x_train"][:limit_train], arrays["y_train"][:limit_train]
    raw_test = arrays["x_test"][:limit_test], arrays["y_test"][:limit_test]
    x_train, y_train = _prepare(*raw_train, normalization)
    x_test, y_test = _prepare(*raw_test, normalization)
    # Keras's fit(validation_split=v) keeps the last v of the data, before any shuffling: the study's split.
    n_train = int(len(x_train) * (1 - validation_split))
    if n_train < 1 or n_train == len(x_train):
        raise ConfigError(
            f"data.validation_split={validation_split!r} leaves {n_train} of {len(x_train)} images for training "
            f"and {len(x_train) - n_train} for validation; both need at least one (raise data.limit_train or change the split)."
        )
    log.info("MNIST: %d train, %d validation, %d test images", n_train, len(x_train) - n_train, len(x_test))
    digests = {"training": _digest(raw_train[0][:n_train], raw_train[1][:n_train], normalization),
               "validation": _digest(raw_train[0][n_train:], raw_train[1][n_train:], normalization),
               "testing": _digest(*raw_test, normalization)}
    return MnistData(x_train[:n_train], y_train[:n_train], x_train[n_train:], y_train[n_train:], x_test, y_test,
                     source, digests)


def _keras_cache_file() -> Path:
    """Where Keras's mnist.load_data() keeps MNIST: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets" / "mnist.npz"
