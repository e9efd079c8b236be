"""Predict digits with a logged or registered model: the champion by default.

    python -m mnist_tracking.predict digit.png other.png          # models:/mnist-best@champion
    python -m mnist_tracking.predict --model runs:/<run id>/model images.npy
    python -m mnist_tracking.predict --model models:/mnist-best/3 mnist.npz   # an .npz: its x_test, or its one array

Prints one line per image: where it came from, the predicted digit and its probability. Images are raw
pixels as a file holds them (for MNIST 0-255, 28x28, white digit on black); the model normalizes them. Their
size must be the one the model takes (its signature's: 8x8 for a model trained with data=digits).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

import numpy as np

from mnist_tracking.errors import ConfigError
from mnist_tracking.names import CHAMPION_ALIAS

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".npy", ".npz")


def _pixels(array: np.ndarray, source: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """`array` as uint8 images of shape (n, *shape) (any 2-D shape when None); ConfigError naming `source` if it
    cannot be."""
    size = "x".join(map(str, shape)) if shape else "HxW"
    if array.ndim == 2 and (shape is None or array.shape == shape):
        array = array[None]
    if array.ndim != 3 or (shape is not None and array.shape[1:] != shape) or not array.size:
        raise ConfigError(
            f"{source}: shape {array.shape} is invalid: give {size} images, as ({', '.join(size.split('x'))}) "
            f"or (n, {', '.join(size.split('x'))})."
        )
    if array.dtype.kind not in "uif" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ConfigError(
            f"{source}: {array.dtype} values from {array.min()} to {array.max()} are invalid: give raw "
            "pixels from 0 to 255, as an image holds them."
        )
    if array.dtype.kind == "f" and array.max() <= 1 and np.any(array != np.round(array)):
        raise ConfigError(
            f"{source}: values in [0, 1] look already scaled: give raw pixels as an image holds them "
            "(the model normalizes them as training did)."
        )
    return np.rint(array).astype(np.uint8)


def read_images(path: Path, shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, list[str]]:
    """The images in a PNG, .npy or .npz file as uint8 (n, *shape), and a label for each. `shape`: what the model
    takes (its signature's); None: any 2-D shape."""
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"{path}: a {path.suffix or 'suffix-less'} file is not supported: give {', '.join(SUFFIXES)}."
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file.")
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            if shape is not None and image.size[::-1] != shape:
                raise ConfigError(
                    f"{path}: a {image.size[0]}x{image.size[1]} image is invalid: give "
                    f"{shape[1]}x{shape[0]} pixels, as the model's training images are."
                )
            return _pixels(np.asarray(image.convert("L")), str(path), shape), [str(path)]
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as npz:
            names = ["x_test"] if "x_test" in npz.files else npz.files
            if len(names) != 1:
                raise ConfigError(
                    f"{path}: arrays {npz.files} are ambiguous: give an .npz with one array, or with "
                    "x_test (Keras's mnist.npz layout)."
                )
            array = npz[names[0]]
    images = _pixels(array, str(path), shape)
    return images, [f"{path}[{i}]" for i in range(len(images))] if array.ndim == 3 else [str(path)]


def input_shape(model_uri: str) -> tuple[int, ...]:
    """The image shape the model at `model_uri` takes, from its signature (MNIST's for a model without one)."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    [spec] = info.signature.inputs.inputs if info.signature else [None]
    return tuple(spec.shape[1:]) if spec is not None and spec.shape else (28, 28)


def default_model_uri() -> str:
    """models:/<sweep.registered_model_name>@champion, the name read from conf/ (the sweeps register under it)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        name = compose("config").sweep.registered_model_name
    return f"models:/{name}@{CHAMPION_ALIAS}"


def predict(model_uri: str, images: np.ndarray) -> np.ndarray:
    """Class probabilities (n, classes) for raw uint8 images, from the model at `model_uri` (tracking URI already set).

    A model logged before models took raw pixels is fed pixels normalized as its run's `data.normalization` says.
    """
    import mlflow

    from mnist_tracking.ml.mnist import normalize_images

    info = mlflow.models.get_model_info(model_uri)
    [spec] = info.signature.inputs.inputs if info.signature else [None]
    inputs = images
    if spec is None or spec.type != np.uint8:
        normalization = mlflow.MlflowClient().get_run(info.run_id).data.params["data.normalization"]
        log.info("%s takes normalized images: normalizing as its run did (%s)", model_uri, normalization)
        inputs = normalize_images(images, normalization)
    return np.asarray(mlflow.pyfunc.load_model(model_uri).predict(inputs))


def main(argv: list[str] | None = None) -> None:
    """Prints the predicted digit and its probability for each image in FILEs."""
    parser = argparse.ArgumentParser(prog="python -m mnist_tracking.predict", description=main.__doc__)
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="PNG images, .npy or .npz arrays, sized as the model takes them (28x28 for MNIST)",
    )
    parser.add_argument("--model", help="a model URI (default: models:/mnist-best@champion)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from mnist_tracking.runtime.redaction import redact_text
    from mnist_tracking.tracking.store import existing_store, resolve_tracking_uri

    try:
        loaded = [read_images(path) for path in args.files]  # every file checked before the model loads
        tracking_uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
        if args.model is None or args.model.startswith(("models:", "runs:")):  # not for a model's own folder
            existing_store(tracking_uri)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    model_uri = args.model or default_model_uri()
    try:  # whatever loading and predicting print (Keras's progress bar) goes to stderr: stdout is the digits
        shape = input_shape(model_uri)
        images = np.concatenate([_pixels(images, str(path), shape) for path, (images, _) in zip(args.files, loaded)])
        with contextlib.redirect_stdout(sys.stderr):
            probabilities = predict(model_uri, images)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    except MlflowException as exc:
        raise SystemExit(
            f"error: cannot load {model_uri} from {redact_text(tracking_uri)}: {exc.message}. A sweep registers its "
            "best model and names the champion (python -m mnist_tracking.train -m ...); or pass --model "
            "runs:/<run id>/model."
        ) from None
    labels = [label for _, names in loaded for label in names]
    for label, row in zip(labels, probabilities):
        print(f"{label}: {int(row.argmax())} (p={row.max():.4f})")


if __name__ == "__main__":
    main()  # returns None: exit status 0, as sys.exit(None) gave
