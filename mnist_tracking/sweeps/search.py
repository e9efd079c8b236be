"""An Optuna search that continues where it stopped: hydra-optuna-sweeper's study rebuilt from the sweep's runs.

Optuna's own persistence is out of reach here: hydra-optuna-sweeper 1.3 allows only optuna 2.10, whose
RDB storage fails against SQLAlchemy 2 (which MLflow needs) as soon as it creates a study. The sweep's
MLflow runs already hold each trial's parameters (the `overrides` tag) and result, in the same store as
everything else, local or on the team's server. So when a stopped search's parent run is continued, its
finished trials go back into the study and its interrupted (or failed) trials are asked again first,
with their own parameters, so that their jobs continue their runs. (Hydra wants the sweeper class itself in the
`hydra_plugins` namespace: hydra_plugins/mnist_tracking_search.)
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntLogUniformDistribution,
    IntUniformDistribution,
)

from mnist_tracking.names import OVERRIDES_TAG, PARENT_RUN_TAG, SUPERSEDED_TAG
from mnist_tracking.tracking.resume import is_stopped
from mnist_tracking.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)


def continue_study(sweeper: Any, arguments: list[str]) -> None:
    """Points hydra-optuna-sweeper's `sweeper` (its OptunaSweeperImpl) at a study that holds the trials already
    recorded under the sweep's parent run, and lowers its trials to go by the finished ones."""
    config = sweeper.config
    given = (o.split("=", 1)[1] for o in config.hydra.overrides.hydra if o.startswith("mlflow.parent_run_id="))
    parent = next(given, None)
    if parent is None:  # a dry run of a new search: no parent, no trials
        return
    client = mlflow.MlflowClient(resolve_tracking_uri(config.mlflow.tracking_uri, Path(config.hydra.runtime.cwd)))
    try:  # hydra-optuna-sweeper's internals (its search space and directions), read before the sweeper is changed
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        distributions, _ = create_params_from_overrides(sweeper._parse_sweeper_params_config() + list(arguments))
        directions = sweeper._get_directions()
    except (ImportError, AttributeError):  # gone in a later release: a new study, as the plain sweeper runs it
        log.warning(
            "Cannot continue the stopped search with this hydra-optuna-sweeper; starting a new study", exc_info=True
        )
        return
    sweeper.storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=sweeper.study_name, storage=sweeper.storage, directions=directions)
    jobs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent}'",
        max_results=10_000,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # add_trial, enqueue_trial
        for run in sorted(jobs, key=lambda r: r.info.start_time):
            if SUPERSEDED_TAG in run.data.tags:  # its job's newer run stands for it
                continue
            params = _trial_params(run, distributions)
            if run.info.status == "FINISHED":
                study.add_trial(
                    optuna.trial.create_trial(
                        params=params, distributions=distributions, value=run.data.metrics[config.optimized_metric]
                    )
                )
            elif is_stopped(run):
                # Interrupted or failed: asked again first, with its own parameters. Its job continues the run
                # from its checkpoint, or trains a new run that supersedes it.
                study.enqueue_trial(params)
    done = sum(t.state.is_finished() for t in study.trials)
    if done:
        log.info("Continuing the search: %d of %d trials done", done, sweeper.n_trials)
        # A seeded sampler would replay its first suggestions, the trials this search already ran: draw anew.
        sweeper.sampler.reseed_rng()
    sweeper.n_trials = max(0, sweeper.n_trials - done)


def log_study(sweeper: Any) -> None:
    """Logs how many trials the sweeper's study holds, and in which states, once its search is over."""
    study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
    states = [t.state.name for t in study.trials]
    log.info(
        "Study %s: %d trials (%s)",
        study.study_name,
        len(states),
        ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))),
    )


def _trial_params(run: mlflow.entities.Run, distributions: dict[str, BaseDistribution]) -> dict[str, Any]:
    """A job's values of the searched parameters, from its overrides, as Optuna holds them."""
    given = dict(o.split("=", 1) for o in json.loads(run.data.tags.get(OVERRIDES_TAG, "[]")) if "=" in o)
    params = {}
    for name, distribution in distributions.items():
        text = given[name]
        if isinstance(distribution, CategoricalDistribution):
            params[name] = next(c for c in distribution.choices if str(c) == text)
        elif isinstance(distribution, (IntUniformDistribution, IntLogUniformDistribution)):
            params[name] = int(text)
        else:
            params[name] = float(text)
    return params
