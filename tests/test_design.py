"""The codebase's shape, checked: what a newcomer relies on when reading it (docs/design.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from mnist_tracking import names
from mnist_tracking.tracking.inputs import flatten_config
from tests.helpers import ROOT, compose_config

PACKAGE = ROOT / "mnist_tracking"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found & known


def test_no_import_circle():
    mods = modules()
    graph = {name: imported(path, set(mods)) - {name} for name, path in mods.items()}
    # A package's __init__ imported by its modules is no circle: Python runs it first, and these import nothing.
    graph = {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}

    def cycle_from(start: str, path: list[str]) -> Iterator[list[str]]:
        for dep in sorted(graph[path[-1]]):
            if dep == start:
                yield [*path, dep]
            elif dep not in path and dep > start:  # each circle once, from its smallest module
                yield from cycle_from(start, [*path, dep])

    circles = [circle for name in graph for circle in cycle_from(name, [name])]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles[:5])


def test_no_module_over_250_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 250
    }
    assert not long


def test_train_reads_in_at_most_40_lines():
    tree = ast.parse((PACKAGE / "train.py").read_text())
    [train] = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train"]
    assert train.end_lineno - train.lineno + 1 <= 40


def test_tag_names_are_literals_only_in_the_names_module():
    tags = {
        value
        for key, value in vars(names).items()
        if key.endswith(("_TAG", "_TAG_PREFIX", "_ALIAS", "_ARTIFACT")) and isinstance(value, str)
    }
    # Config keys that happen to share a tag's name (the parent run records the config's optimized_metric as a tag).
    config_keys = set(compose_config([]).keys())
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in tags - config_keys:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not found


def test_every_group_option_matches_its_typed_signature():
    """Each YAML option's keys are the fields of its group's schema, or the arguments of the function it names."""
    import dataclasses
    import inspect

    from hydra.utils import get_method
    from omegaconf import OmegaConf

    from mnist_tracking.config.schema import GROUPS

    for group in ("trainer", "mlflow", "sweep"):
        fields = {f.name for f in dataclasses.fields(GROUPS[group])}
        for option in (ROOT / "conf" / group).glob("*.yaml"):
            assert set(OmegaConf.load(option)) == fields, option
    data_fields = {f.name for f in dataclasses.fields(GROUPS["data"])}
    passed = {"model": {"input_shape", "num_classes"}, "data": set()}  # what train() passes from the dataset
    for group in ("data", "model"):
        for option in (ROOT / "conf" / group).glob("*.yaml"):
            keys = set(OmegaConf.load(option)) - {"_target_"}
            builder = get_method(OmegaConf.load(option)["_target_"])
            assert keys | passed[group] == set(inspect.signature(builder).parameters), option
            if group == "data":
                assert keys <= data_fields, option
    root = {f.name for f in dataclasses.fields(GROUPS[None])}
    assert root <= set(OmegaConf.load(ROOT / "conf" / "config.yaml"))


def unknown_keys(overlay: Path, composed: DictConfig) -> list[str]:
    """The keys a `# @package _global_` file sets that the composed config lacks: a misspelt key would add a new
    one that nothing reads. Its defaults list and Hydra's own node are Hydra's to check."""
    from omegaconf import OmegaConf

    leaves = flatten_config({k: v for k, v in OmegaConf.to_container(OmegaConf.load(overlay)).items()})
    return [
        key
        for key in leaves
        if key.split(".")[0] not in ("defaults", "hydra")
        and OmegaConf.select(composed, key, default=KeyError) is KeyError
    ]


def test_global_overlays_set_only_keys_the_config_has(tmp_path):
    composed = compose_config([])
    overlays = [p for p in sorted((ROOT / "conf").glob("*/*.yaml")) if p.read_text().startswith("# @package _global_")]
    assert {p.parent.name for p in overlays} >= {"experiment", "hparams_search", "debug", "local"}
    assert {str(p.relative_to(ROOT)): unknown_keys(p, composed) for p in overlays} == {
        str(p.relative_to(ROOT)): [] for p in overlays
    }
    typo = tmp_path / "typo.yaml"
    typo.write_text("# @package _global_\ndata:\n  limit_trian: 10\ntrainer:\n  epochs: 1\n")
    assert unknown_keys(typo, composed) == ["data.limit_trian"]
