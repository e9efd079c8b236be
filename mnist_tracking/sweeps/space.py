"""What a sweep varies, read from its config: the command line's sweeps and the sweeper's own params."""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig


def swept_values(config: DictConfig) -> dict[str, str]:
    """What the sweep varies: command-line sweeps (`a=1,2`) and `hydra.sweeper.params` (grid or search space)."""
    swept = {}
    for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if override.is_sweep_override():
            key = override.get_key_element().lstrip("+~")  # `++a=1,2` sweeps `a`; MLflow names allow no `+`
            try:
                swept[key] = ",".join(override.sweep_string_iterator())
            except Exception:  # a range or interval for a search has no list of values: keep it as written
                swept[key] = override.get_value_element_as_str()
    params = config.hydra.sweeper.get("params") or {}
    swept.update({key.lstrip("+~"): str(value) for key, value in params.items()})
    return swept
