"""What mattered in a sweep: each swept key's fANOVA importance for the optimized metric, and a figure of every job.

Both are built from the sweep's report table (one row per job), so the sweep's end and the report command, which
rebuilds the table from the store, compute the same values.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mnist_tracking.ml import figures

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

SEED = 0  # fANOVA's random forest: fixed, so that every computation from the same table gives the same values
MIN_JOBS = 3  # fewer jobs than this leave the forest nothing to split


@dataclass(frozen=True)
class Importances:
    """Each swept key's share of the variance of the metric, largest first (summing to 1), or why there is none."""

    values: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None

    def frame(self) -> pd.DataFrame:
        """A row per key, `key` and `importance`, largest first."""
        return pd.DataFrame({"key": list(self.values), "importance": list(self.values.values())})


def finished_jobs(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The FINISHED jobs with a finite `metric`, in run id order (the forest sees the rows in one order each time)."""
    scores = pd.to_numeric(table[metric], errors="coerce")
    jobs = table[(table["status"] == "FINISHED") & np.isfinite(scores.astype(float))]
    return jobs.sort_values("run_id", kind="stable")


def column(values: pd.Series) -> list[float] | list[str]:
    """A key's values as numbers when each is a finite number, else as text (a categorical key)."""
    texts = [str(value) for value in values]
    try:
        numbers = [float(text) for text in texts]
    except ValueError:
        return texts
    return numbers if all(map(math.isfinite, numbers)) else texts


def importances(table: pd.DataFrame, keys: list[str], metric: str, direction: str) -> Importances:
    """fANOVA importances of the swept `keys` for `metric` over the finished jobs, or why they cannot be computed."""
    jobs = finished_jobs(table, metric)
    if len(jobs) < MIN_JOBS:
        return Importances(skipped=f"it needs {MIN_JOBS} or more finished jobs with a finite {metric}, not {len(jobs)}")
    columns = {key: column(jobs[key]) for key in keys}
    varied = [key for key, values in columns.items() if len(set(values)) > 1]
    if len(varied) < 2:
        named = f" ({varied[0]})" if varied else ""
        return Importances(skipped=f"it needs 2 or more swept keys that vary, not {len(varied)}{named}")
    scores = jobs[metric].astype(float).tolist()
    if len(set(scores)) == 1:
        return Importances(skipped=f"every finished job has the same {metric} ({scores[0]:g}): nothing to explain")
    from optuna.importance import (  # only here: a slow import
        FanovaImportanceEvaluator,
        MeanDecreaseImpurityImportanceEvaluator,
        get_param_importances,
    )

    with _quiet_optuna(), _fanova_on_this_numpy():
        study = _study({key: columns[key] for key in varied}, scores, direction)
        try:
            found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=SEED))
        except RuntimeError as exc:  # "Encountered zero total variance in all trees": no split explains any of it
            return Importances(skipped=f"fANOVA found no variance to attribute ({exc})")
        except ValueError as exc:  # fANOVA unpatched on this NumPy: the same random forest's impurity decrease
            log.warning("Optuna's fANOVA failed (%s): importances by mean decrease in impurity instead", exc)
            found = get_param_importances(study, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=SEED))
    return Importances(values={key: float(value) for key, value in found.items()})


def _study(columns: dict[str, list[float] | list[str]], scores: list[float], direction: str) -> optuna.Study:
    """An in-memory Optuna study with one COMPLETE trial per job: its swept values and its score."""
    import optuna

    distributions = {key: _distribution(values) for key, values in columns.items()}
    study = optuna.create_study(direction=direction)
    for row, score in enumerate(scores):
        params = {key: _param(values[row]) for key, values in columns.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=score))
    return study


def _param(value: float | str) -> Any:
    """A whole number as an int, which IntUniformDistribution requires; any other value as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _distribution(values: list[float] | list[str]) -> Any:
    """Integers, floats or categories, from the values the jobs took (Optuna 2's distribution classes)."""
    from optuna.distributions import CategoricalDistribution, IntUniformDistribution, UniformDistribution

    if all(isinstance(value, float) for value in values):
        numbers = [float(value) for value in values]
        if all(number.is_integer() for number in numbers):
            return IntUniformDistribution(int(min(numbers)), int(max(numbers)))
        return UniformDistribution(min(numbers), max(numbers))
    return CategoricalDistribution(sorted(set(map(str, values))))


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silences what Optuna says about a study used only as a container: its INFO line on creating one, and the
    ExperimentalWarning of create_trial and add_trial. Optuna's verbosity is restored after."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def _fanova_on_this_numpy() -> Iterator[None]:
    """Optuna 2's fANOVA with scikit-learn >= 1.3 and NumPy 2: a tree node's value is now a (1, 1) array, which
    Optuna stores into a float slot ("setting an array element with a sequence"). For this call only, its private
    `_FanovaTree._get_node_value` returns the scalar. Where Optuna has no such method, a warning says so and the
    public evaluator runs as it is (`importances` falls back to another public one if it fails)."""
    try:
        from optuna.importance._fanova._tree import _FanovaTree

        original = _FanovaTree._get_node_value
    except (ImportError, AttributeError):
        log.warning("Optuna's private _FanovaTree._get_node_value is gone: its fANOVA evaluator runs unpatched")
        yield
        return
    _FanovaTree._get_node_value = lambda self, node: float(np.ravel(original(self, node))[0])  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        _FanovaTree._get_node_value = original  # type: ignore[method-assign]


def parallel_coordinates(
    table: pd.DataFrame, keys: list[str], metric: str, direction: str, title_prefix: str = ""
) -> Figure | None:
    """Every finished job as a line across an axis per swept key and one for `metric`; None with no finished job."""
    jobs = finished_jobs(table, metric)
    if jobs.empty:
        return None
    return figures.parallel_coordinates(
        {key: column(jobs[key]) for key in keys},
        jobs[metric].astype(float).tolist(),
        metric,
        f"{title_prefix}{len(jobs)} finished jobs: swept values and {metric} ({direction})",
        minimize=direction == "minimize",
    )
