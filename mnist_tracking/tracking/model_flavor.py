"""The flavor the logged model is saved with: MLflow's Keras flavor, loaded through `model_loader` as pyfunc.

`mlflow.keras.load_model` reads the model as usual. `mlflow.pyfunc.load_model`, `mlflow models serve` and every
deployment load it through the loader shipped inside the model, which picks the model's own Keras backend.
Passed to MLflow's public `Model.log(flavor=...)`, which calls `save_model` below.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import Model

LOADER_MODULE = "mnist_tracking_model_loader"  # its name inside the model: unique on any sys.path
CODE_DIR = "code"


def save_model(model: Any, path: str, mlflow_model: Model, **kwargs: Any) -> None:
    """`mlflow.keras.save_model`, then the pyfunc flavor pointed at the loader copied into the model."""
    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    code = Path(path, CODE_DIR)
    code.mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("model_loader.py"), code / f"{LOADER_MODULE}.py")
    pyfunc = mlflow_model.flavors["python_function"]
    pyfunc["loader_module"] = LOADER_MODULE
    pyfunc["code"] = CODE_DIR
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_model(model: Any, **kwargs: Any) -> mlflow.models.model.ModelInfo:
    """Logs `model` with this flavor (`kwargs` as `mlflow.keras.log_model` takes them)."""
    return Model.log(None, flavor=sys.modules[__name__], model=model, **kwargs)
