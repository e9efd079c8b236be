"""The command's `--help`: the project's help template (conf/hydra/help/mnist.yaml) with its own config groups."""

from __future__ import annotations

import string
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# The root config's `optional local: default`: composed when the (git-ignored) file exists; example.yaml, committed,
# is a starting point, not an option to select.
LOCAL = "local: default, composed when conf/local/default.yaml exists ({}; start from conf/local/example.yaml)\n"


def config_groups(conf_dir: Path = CONF_DIR) -> str:
    """One line per config group of this project, with its options (Hydra's own groups left out)."""
    return "".join(
        LOCAL.format("present" if (group / "default.yaml").is_file() else "absent")
        if group.name == "local"
        else f"{group.name}: {', '.join(sorted(option.stem for option in group.glob('*.yaml')))}\n"
        for group in sorted(conf_dir.iterdir())
        if group.is_dir() and group.name != "hydra"
    )


def render_help(overrides: list[str]) -> str:
    """The help text, with the config composed from `overrides` as a run would have it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    template = cfg.hydra.help.template
    with open_dict(cfg):
        del cfg["hydra"]
    return string.Template(template).safe_substitute(APP_CONFIG_GROUPS=config_groups(), CONFIG=OmegaConf.to_yaml(cfg))
