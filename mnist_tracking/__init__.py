"""Hydra-composed Keras training on MNIST, every run tracked in MLflow.

Importing the package gives Keras the project's backend (`backend` in conf/config.yaml) unless `KERAS_BACKEND`
says otherwise: Keras reads that variable once, at its first import, and falls back to TensorFlow, which the base
install does not have. So every entry point (`predict`, `report`, the callback in a script of one's own) runs on
the backend the project trains on, with or without TensorFlow installed. `train` then sets its config's `backend`.
"""

import os
import sys
from pathlib import Path

__version__ = "0.1.0"


def _default_backend() -> str:
    """The `backend` of conf/config.yaml: the one place the project's default lives."""
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not a dependency

    with open(Path(__file__).resolve().parents[1] / "conf" / "config.yaml", encoding="utf-8") as file:
        return str(yaml.safe_load(file)["backend"])


if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
    os.environ["KERAS_BACKEND"] = _default_backend()
