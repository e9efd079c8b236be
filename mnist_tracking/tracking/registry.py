"""The MLflow Model Registry: a run's logged model as a new version of a registered model, and the `champion`
alias, which moves to a new version only when it beats the current champion."""

from __future__ import annotations

import logging
import math

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mnist_tracking.names import CHAMPION_ALIAS, DATASET_CONTEXT_TAG

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


def _test_digest(run: mlflow.entities.Run) -> str | None:
    """The digest of the test set the run was evaluated on (its `testing` dataset input), if it logged one."""
    if run.inputs is None:  # a run built by hand, not read from a store: no test set on record
        return None
    for dataset_input in run.inputs.dataset_inputs:
        if any(tag.key == DATASET_CONTEXT_TAG and tag.value == "testing" for tag in dataset_input.tags):
            return dataset_input.dataset.digest
    return None


def _beats(new: float | None, old: float | None, minimize: bool) -> bool:
    """Strictly better; a missing or nan score never is, and anything beats a missing one."""
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new < old if minimize else new > old


def promote_if_better(
    client: mlflow.MlflowClient, version: ModelVersion, metric: str, minimize: bool
) -> tuple[bool, str]:
    """Gives `version` the `champion` alias if it beats the current champion on `metric` and, when both were
    tested on the same test set (equal digests), on the matching test metric too.

    Returns whether it was promoted and why, in words.
    """
    label = f"{version.name} v{version.version}"
    try:
        champion = client.get_model_version_by_alias(version.name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        champion = None
    if champion is None:
        client.set_registered_model_alias(version.name, CHAMPION_ALIAS, version.version)
        return True, f"{label} is the first {CHAMPION_ALIAS}"
    if champion.run_id == version.run_id:
        return False, f"{label} is the same run as {CHAMPION_ALIAS} v{champion.version}: alias kept there"
    # Versions of runs' models, as register_run_model makes (a version registered without a run would fail here).
    assert version.run_id is not None and champion.run_id is not None, "a model version without a run"
    new, old = client.get_run(version.run_id), client.get_run(champion.run_id)
    test_metric = "test_" + metric.removeprefix("val_").removeprefix("test_")
    compared = [metric]
    if _test_digest(new) is not None and _test_digest(new) == _test_digest(old):
        compared.append(test_metric)
        on_test = "on the same test set"
    else:
        on_test = (
            f"test sets differ (digest {_test_digest(new)} vs {_test_digest(old)}), so {test_metric} is not compared"
        )
    scores = ", ".join(
        f"{name} {new.data.metrics.get(name, math.nan):.4f} vs {old.data.metrics.get(name, math.nan):.4f}"
        for name in compared
    )
    if all(_beats(new.data.metrics.get(name), old.data.metrics.get(name), minimize) for name in compared):
        client.set_registered_model_alias(version.name, CHAMPION_ALIAS, version.version)
        return True, f"{label} beats {CHAMPION_ALIAS} v{champion.version} ({scores}; {on_test})"
    return False, f"{label} does not beat {CHAMPION_ALIAS} v{champion.version} ({scores}; {on_test}): alias kept there"
