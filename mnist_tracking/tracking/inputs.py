"""What a run is given, recorded: its config as params and YAML, and its data splits as MLflow datasets."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any, cast

import mlflow
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.ml.data import Dataset
from mnist_tracking.names import (
    DATASET_NAME,
    DATASET_SPLITS,
)
from mnist_tracking.runtime.redaction import redact
from mnist_tracking.tracking.labels import DESCRIPTIVE_KEYS
from mnist_tracking.tracking.store import store_lock

log = logging.getLogger(__name__)


def datasets(data: Dataset) -> dict[str, mlflow.data.Dataset]:
    """The run's training, validation and test sets as MLflow datasets (name, digest, source), by context."""
    found = {}
    for context, (x, y) in data.splits().items():
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so for every path
            warnings.filterwarnings(
                "ignore", message="The specified dataset source can be interpreted in multiple ways"
            )
            # mlflow.data defines its dataset constructors at import time (setattr): not in what mypy sees
            found[context] = mlflow.data.from_numpy(  # type: ignore[attr-defined]
                x,
                targets=y,
                source=data.source,
                name=DATASET_NAME.format(dataset=data.name, split=DATASET_SPLITS[context]),
                digest=data.digests[context],
            )
    return found


def log_datasets(splits: Mapping[str, mlflow.data.Dataset], tracking_uri: str) -> None:
    """Logs the run's datasets (from `datasets`) as MLflow dataset inputs, each with its context: the UI's Datasets
    column and filter, and a digest that runs on the same data share.

    MLflow adds a dataset to the experiment when it is new, by a check and then an insert: two jobs that log
    the same new dataset at once race, and the loser fails on the experiment's unique (name, digest). So this
    happens under the store's lock, and a job that loses the race on another machine tries once more.
    """
    for context, dataset in splits.items():
        with store_lock(tracking_uri):
            try:
                mlflow.log_input(dataset, context=context)
            except MlflowException as exc:
                if "UNIQUE constraint" not in str(exc) and "duplicate key" not in str(exc):
                    raise
                log.info("Dataset %s was added by another job at the same moment; logging it again", dataset.name)
                mlflow.log_input(dataset, context=context)


def flatten_config(cfg: DictConfig | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a (resolved) config under its dotted key, lists kept whole as one value."""
    # A DictConfig's container is a dict with string keys (the stub's return type covers every node kind).
    container: Mapping[str, Any] = (
        cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)) if isinstance(cfg, DictConfig) else cfg
    )
    flat: dict[str, Any] = {}
    for key, value in container.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def log_config(cfg: DictConfig, overrides: list[str], logged: Mapping[str, str] | None = None) -> None:
    """Logs every config leaf as a param, and the resolved config and overrides as YAML artifacts (secrets masked).

    `logged`: params the run has already (a resumed run); they keep their first values. `tags` and `notes` are the
    run's tags (tracking/labels.py), not params: a continued run takes the new ones, and a note may be long.
    """
    container = redact(OmegaConf.to_container(cfg, resolve=True))
    params = {key: value for key, value in container.items() if key not in DESCRIPTIVE_KEYS}
    mlflow.log_params({key: value for key, value in flatten_config(params).items() if key not in (logged or {})})
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(container)), "config/config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(redact(list(overrides)))), "config/overrides.yaml")
