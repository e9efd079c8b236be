"""The pyfunc loader that every logged model carries (as `code/mnist_tracking_model_loader.py`).

Keras reads `KERAS_BACKEND` once, at its first import, and falls back to TensorFlow. A model trained on JAX then
fails to load wherever TensorFlow is absent: in a base install, and in the environment MLflow builds from the
model's own requirements (`mlflow models serve --env-manager uv`, `build-docker`). This loader sets the backend
that the model's `keras` flavor records (`keras_backend`) before Keras is imported, unless `KERAS_BACKEND` is set
already, and then loads the model with MLflow's Keras flavor. It imports nothing of this project: it must run
where only the model's requirements are installed.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _load_pyfunc(path: str) -> KerasPredictor:
    """MLflow's pyfunc entry point: `path` is the model's directory."""
    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        from mlflow.models import Model

        os.environ["KERAS_BACKEND"] = Model.load(path).flavors["keras"]["keras_backend"]
    import mlflow.keras

    return KerasPredictor(mlflow.keras.load_model(path))


class KerasPredictor:
    """What `mlflow.pyfunc` calls: the Keras model's probabilities as a NumPy array."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import keras
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return pd.DataFrame(
                keras.ops.convert_to_numpy(self.model.predict(data.values, verbose=0)), index=data.index
            )
        return keras.ops.convert_to_numpy(self.model.predict(data, verbose=0))
