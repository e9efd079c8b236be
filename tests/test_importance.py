"""What mattered in a sweep: fANOVA importances from a report table, the reasons for none, and the figure."""

from __future__ import annotations

import io
import itertools

import pandas as pd
import pytest

from mnist_tracking.sweeps import importance

KEYS = ["model.hidden_units", "model"]


def table(scores: list[float] | None = None, status: str = "FINISHED") -> pd.DataFrame:
    """Six jobs over two keys; by default hidden_units drives val_accuracy and model barely moves it."""
    jobs = list(itertools.product(["8", "16", "32"], ["dense", "mlp64"]))
    if scores is None:
        scores = [0.5 + int(units) / 100 + (0.001 if model == "mlp64" else 0) for units, model in jobs]
    return pd.DataFrame(
        {
            "model.hidden_units": [units for units, _ in jobs],
            "model": [model for _, model in jobs],
            "val_accuracy": scores,
            "run_id": [f"run{i}" for i in range(len(jobs))],
            "status": status,
        }
    )


def test_the_key_that_drives_the_metric_matters_most_and_the_importances_sum_to_one():
    found = importance.importances(table(), KEYS, "val_accuracy", "maximize")
    assert found.skipped is None
    assert set(found.values) == set(KEYS)
    assert found.values["model.hidden_units"] > found.values["model"]
    assert sum(found.values.values()) == pytest.approx(1, abs=1e-6)
    assert list(found.frame()["key"]) == list(found.values)


def test_the_importances_do_not_depend_on_the_tables_order():
    ranked = importance.importances(table(), KEYS, "val_accuracy", "maximize")
    shuffled = importance.importances(table().sample(frac=1, random_state=1), KEYS, "val_accuracy", "maximize")
    assert shuffled.values == ranked.values


@pytest.mark.parametrize(
    ("jobs", "keys", "reason"),
    [
        (table().iloc[:2], KEYS, "3 or more finished jobs with a finite val_accuracy, not 2"),
        (
            table(scores=[0.5, 0.6, float("inf"), None, 0.7, 0.8]).assign(status=["FINISHED"] * 4 + ["FAILED"] * 2),
            KEYS,
            "3 or more finished jobs with a finite val_accuracy, not 2",
        ),
        (table(), ["model"], "2 or more swept keys that vary, not 1 (model)"),
        (table().assign(model="dense"), KEYS, "2 or more swept keys that vary, not 1 (model.hidden_units)"),
        (table(scores=[0.9] * 6), KEYS, "every finished job has the same val_accuracy (0.9)"),
    ],
    ids=["two jobs", "failed and non-finite jobs left out", "one key", "one key varies", "constant metric"],
)
def test_importance_is_skipped_with_a_reason(jobs, keys, reason):
    found = importance.importances(jobs, keys, "val_accuracy", "maximize")
    assert found.values == {} and reason in found.skipped


def test_numbers_and_categories_become_optunas_distributions():
    from optuna.distributions import CategoricalDistribution, IntUniformDistribution, UniformDistribution

    assert importance.column(pd.Series(["8", "16"])) == [8.0, 16.0]
    assert importance.column(pd.Series(["0.1", "nan"])) == ["0.1", "nan"]
    assert isinstance(importance._distribution([8.0, 16.0]), IntUniformDistribution)
    assert isinstance(importance._distribution([0.01, 0.1]), UniformDistribution)
    assert importance._distribution(["mlp64", "dense"]).choices == ("dense", "mlp64")
    assert isinstance(importance._distribution(["dense"]), CategoricalDistribution)


def test_the_parallel_coordinates_draw_every_finished_job_across_each_key_and_the_metric():
    jobs = pd.concat([table(), table(status="FAILED").assign(run_id="failed")])
    fig = importance.parallel_coordinates(jobs, KEYS, "val_accuracy", "maximize")
    [ax] = fig.axes
    assert [label.get_text() for label in ax.get_xticklabels()] == [*KEYS, "val_accuracy"]
    [lines] = ax.collections
    assert len(lines.get_segments()) == 6  # the failed jobs are left out
    assert {"8", "16", "32", "dense", "mlp64"} <= {text.get_text() for text in ax.texts}
    fig.savefig(io.BytesIO())  # lays out and renders
    assert importance.parallel_coordinates(table(status="FAILED"), KEYS, "val_accuracy", "maximize") is None


def test_without_optunas_private_fanova_fix_a_public_evaluator_still_answers(monkeypatch, caplog):
    import sys
    import types

    import optuna.importance  # noqa: F401  (its fANOVA keeps the tree class it imported)

    # As if a later Optuna had moved the private class: the fix cannot apply, fANOVA runs unpatched and fails on this
    # NumPy, and the importances come from another public evaluator.
    monkeypatch.setitem(sys.modules, "optuna.importance._fanova._tree", types.ModuleType("moved"))
    found = importance.importances(table(), KEYS, "val_accuracy", "maximize")
    assert "private _FanovaTree._get_node_value is gone" in caplog.text
    assert found.skipped is None and sum(found.values.values()) == pytest.approx(1, abs=1e-6)
    assert found.values["model.hidden_units"] > found.values["model"]
