"""The MLflow Model Registry: a run's logged model as a new version of a registered model."""

from __future__ import annotations

import logging

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)


def register_run_model(client: mlflow.MlflowClient, run_id: str, name: str) -> ModelVersion | None:
    """Registers the model that run `run_id` logged as a new version of `name` (created when absent).

    Returns None, with a warning, when the run logged no model.
    """
    experiment_id = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        log.warning("Run %s has no logged model to register", run_id)
        return None
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(name, models[0].model_uri, run_id=run_id, model_id=models[0].model_id)
