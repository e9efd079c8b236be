"""The config's typed schema: one dataclass per group whose keys are fixed (the root, `data`, `trainer`, `mlflow`,
`sweep`), one field per YAML key, each with its type and the rule its value must meet.

YAML holds every default (conf/); these hold the types and rules. `check` refuses a value its field's type cannot
hold as it is (OmegaConf's structured-config validation, with no conversion: `2.5` or `"10"` is no whole number),
or that breaks the field's rule, with a message naming the key, the value and what is valid. The groups whose keys
are another function's arguments (`model`, `optimizer`, `callbacks`) are checked by that function's signature and
by config/checks.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from mnist_tracking.errors import ConfigError
from mnist_tracking.ml.data import NORMALIZATIONS
from mnist_tracking.names import DIRECTIONS, OPTIMIZABLE_METRICS
from mnist_tracking.runtime.backend import BACKENDS


def rule(valid: Callable[[Any], bool], hint: str, optional: bool = False) -> Any:
    """A field whose value must also pass `valid`; `hint` says what is valid. `optional`: a key only some options
    of the group have (a dataset's own)."""
    return dataclasses.field(default=MISSING, metadata={"valid": valid, "hint": hint, "optional": optional})


def one_of(choices: tuple[str, ...]) -> Any:
    return rule(lambda v: v in choices, f"use one of {', '.join(choices)}")


def _at_least(low: int, hint: str) -> Any:
    return rule(lambda v: v >= low, hint)


def _fraction(example: str, optional: bool = False) -> Any:
    return rule(lambda v: 0 < v < 1, f"use a fraction strictly between 0 and 1, e.g. {example}", optional)


def _flag() -> Any:
    return rule(lambda v: True, "use true or false")


def _text() -> Any:
    return rule(lambda v: True, "use a string")


@dataclasses.dataclass
class Root:
    backend: str = one_of(BACKENDS)
    seed: int = rule(lambda v: 0 <= v < 2**32, "use a whole number from 0 to 2**32 - 1, e.g. 42")
    optimized_metric: str = one_of(OPTIMIZABLE_METRICS)
    optimized_direction: str = one_of(DIRECTIONS)
    # What describes a run (tracking/labels.py checks the tags' names and values): values from the command line
    # may be numbers or booleans, recorded as text.
    tags: dict[str, Any] = rule(lambda v: True, "use a mapping of tag names to values, e.g. +tags.purpose=baseline")
    notes: str | None = rule(lambda v: True, 'use null or a text, quoted when it has a comma: notes="why, this run"')


@dataclasses.dataclass
class Data:
    """The keys every dataset has (conf/data/); a dataset's own keys (`path`, `test_split`) are checked if present."""

    batch_size: int = _at_least(1, "use a whole number >= 1, e.g. 32")
    normalization: str = one_of(NORMALIZATIONS)
    validation_split: float = _fraction("0.25")
    test_split: float = _fraction("0.2", optional=True)
    limit_train: int | None = rule(lambda v: v is None or v >= 1, "use null (all images) or a whole number >= 1")
    limit_test: int | None = rule(lambda v: v is None or v >= 1, "use null (all images) or a whole number >= 1")
    path: str | None = rule(lambda v: True, "use null (Keras's cache) or the path of a local mnist.npz", optional=True)


@dataclasses.dataclass
class Trainer:
    epochs: int = _at_least(1, "use a whole number >= 1, e.g. 30")
    fast: bool = _flag()
    eval_batch_size: int = _at_least(1, "use a whole number >= 1, e.g. 1024")
    checkpoint_every: int = _at_least(0, "use a whole number of epochs >= 0 (0: no checkpoints), e.g. 1")
    resume: Any = rule(
        lambda v: v is False or v == "auto" or (isinstance(v, str) and bool(re.fullmatch(r"[0-9a-f]{32}", v))),
        "use auto, false, or the 32-character id of a stopped run",
    )


@dataclasses.dataclass
class Mlflow:
    tracking_uri: str | None = rule(lambda v: True, "use null ($MLFLOW_TRACKING_URI, else ./mlruns) or a URI")
    experiment_name: str = _text()
    parent_run_id: str | None = rule(lambda v: True, "leave it null: the sweep sets it")
    log_system_metrics: bool = _flag()
    system_metrics_interval: float = rule(lambda v: v > 0 and math.isfinite(v), "use a number of seconds > 0, e.g. 2")
    log_images_every: int = _at_least(0, "use a whole number of epochs >= 0 (0: no images), e.g. 1")
    misclassified_table_rows: int | None = rule(
        lambda v: v is None or v >= 0, "use null (every misclassified digit) or a whole number >= 0, e.g. 100"
    )


@dataclasses.dataclass
class Sweep:
    register_best: bool = _flag()
    registered_model_name: str = _text()
    skip_finished: bool = _flag()
    resume: bool = _flag()
    dry_run: bool = _flag()


GROUPS: dict[str | None, type] = {None: Root, "data": Data, "trainer": Trainer, "mlflow": Mlflow, "sweep": Sweep}


def check(cfg: DictConfig) -> None:
    """Raises ConfigError for the first key of a schema'd group whose value has the wrong type or breaks its rule."""
    for group, schema in GROUPS.items():
        node = cfg if group is None else cfg.get(group) or {}
        for field in dataclasses.fields(schema):
            key = field.name if group is None else f"{group}.{field.name}"
            if field.name not in node:
                if field.metadata["optional"]:
                    continue
                raise ConfigError(f"{key} is missing: {field.metadata['hint']} (conf/ sets it; was it deleted?).")
            value = node[field.name]
            if not _holds(schema, field.name, value) or not field.metadata["valid"](value):
                raise ConfigError(f"{key}={value!r} is invalid: {field.metadata['hint']}.")


def _holds(schema: type, name: str, value: Any) -> bool:
    """Whether the field holds `value` as it is: OmegaConf accepts it, converting nothing but a whole number to a
    float; nan and infinities are never settings here."""
    node = OmegaConf.structured(schema)
    try:
        node[name] = value
    except ValidationError:
        return False
    held = node[name]
    if isinstance(held, float) and not math.isfinite(held):
        return False
    same_type = type(held) is type(value) or (isinstance(held, float) and type(value) is int)
    return held is None or value is None or (same_type and held == value)
