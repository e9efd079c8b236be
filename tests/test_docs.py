"""The docs cannot drift: every documented command composes, every link and image exists, each study number has one
home, and the pages describe the product (no clock times, first person or history outside provenance blocks)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from mnist_tracking import names
from tests.docs import PAGES, ROOT, blocks, tagged
from tests.helpers import FIXTURE, compose_config, runs

TRAIN = ("python -m mnist_tracking.train", "mnist-train", ".venv/bin/python -m mnist_tracking.train")
PROVENANCE = re.compile(r"<!-- provenance -->.*?<!-- /provenance -->", re.S)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def train_commands() -> list[tuple[str, list[str]]]:
    """Every `python -m mnist_tracking.train ...` line in the docs' shell blocks, with its arguments (a `text` block
    holds a synopsis, not a command)."""
    found = []
    for block in blocks():
        if block.lang not in ("bash", "sh", "console", ""):
            continue
        for line in block.code.splitlines():
            line = line.removeprefix("$ ").strip()
            start = next((line.index(t) for t in TRAIN if line.startswith(t) or f" {t} " in f" {line} "), None)
            if start is None:
                continue
            words = shlex.split(line[start:], comments=True)
            args = words[2:] if words[0] == "mnist-train" else words[3:]
            found.append((f"{block.page.relative_to(ROOT)}: {line[start:]}", args))
    return found


def variants(args: list[str]) -> list[list[str]]:
    """The overrides of a command as single runs: each sweep (`a=1,2`, `choice(...)`) at its first value, then
    each other value of each sweep in turn (the others at their first)."""
    overrides, rest = [], iter(args)
    for arg in rest:
        if arg in ("--cfg", "-c", "--package", "-p", "--info", "--config-name", "-cn", "--config-dir", "-cd"):
            next(rest, None)  # its value
        elif not arg.startswith("-"):
            overrides.append(arg)
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] if o.is_sweep_override() else [text]
        for o, text in zip(parsed, overrides)
    ]
    first = [options[0] for options in values]
    return [first] + [
        first[:i] + [option] + first[i + 1 :] for i, options in enumerate(values) for option in options[1:]
    ]


COMMANDS = train_commands()


def test_the_docs_show_train_commands():
    assert len(COMMANDS) >= 20  # the collection itself works: a change to how commands are found cannot empty it


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_documented_train_command_composes(where, args, tmp_path):
    if any(arg in ("--help", "-h") for arg in args):
        return  # answered before any config is composed
    extra = []
    if where.startswith(("docs/guides/your-own-model.md", "docs/guides/your-own-data.md")):
        # their commands use the option the guide adds
        write_files(tmp_path, own_model_files()[1] if "own-model" in where else own_data_files())
        extra = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    for overrides in variants(args):
        compose_config([*overrides, *extra])


def test_a_command_that_does_not_compose_fails_the_check():
    assert variants(["-m", "model=dense,mlp65", "seed=1", "--cfg", "job"]) == [
        ["model=dense", "seed=1"],
        ["model=mlp65", "seed=1"],
    ]
    with pytest.raises(Exception, match="mlp65"):
        compose_config(["model=mlp65"])


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page):
    missing = [target for target in relative_links(page) if not (page.parent / target.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to what is not there: {missing}"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [this](missing.md) and ![a figure](images/gone.png), not `[code](x.md)`.\n")
    assert relative_links(page) == ["missing.md", "images/gone.png"]


RESULTS = ROOT / "docs" / "results.md"


def study_numbers() -> set[str]:
    """The four-decimal values (accuracies, losses) of the results page's study section."""
    section = RESULTS.read_text(encoding="utf-8").split("## The study", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\b0\.\d{4}\b", PROVENANCE.sub("", section)))


def test_each_study_number_appears_on_the_results_page_only():
    numbers = study_numbers()
    assert len(numbers) >= 8
    for page in PAGES:
        if page != RESULTS:
            copied = numbers & set(re.findall(r"\b0\.\d{4}\b", page.read_text(encoding="utf-8")))
            assert not copied, f"{page.relative_to(ROOT)} copies {sorted(copied)}: link to docs/results.md instead"
    assert "docs/results.md" in (ROOT / "README.md").read_text(encoding="utf-8")


CLOCK = re.compile(r"(?<![\d.:/])(?:[01]?\d|2[0-3]):[0-5]\d(?![\d:])")
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
FIRST_PERSON = re.compile(r"(?<![\w/-])(?:I|we|We|our|Our|us)(?![\w/'-])")
HISTORY = re.compile(
    r"\b(?:no longer|used to|previously|from before|before this|on older code|until now|"
    r"as of now|this session|the last session)\b",
    re.I,
)


def problems(text: str) -> list[str]:
    """Clock times and dates anywhere, first person and history in prose, outside provenance blocks."""
    text = PROVENANCE.sub("", text)
    prose = FENCE.sub("", text)
    return [
        f"{kind}: {match!r}"
        for kind, pattern, where in (
            ("clock time", CLOCK, text),
            ("date", DATE, text),
            ("first person", FIRST_PERSON, prose),
            ("history", HISTORY, prose),
        )
        for match in pattern.findall(where)
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_pages_describe_the_product_not_a_session(page):
    assert not problems(page.read_text(encoding="utf-8")), page.relative_to(ROOT)


def test_a_diary_line_is_found_and_a_provenance_block_is_allowed():
    assert len(problems("At 21:28 we measured it on 2026-11-29; it no longer does.")) == 4
    assert not problems("Served on 127.0.0.1:5000.\n<!-- provenance -->\n2026-11-29 21:28\n<!-- /provenance -->\n")


def test_the_records_reference_names_every_tag_param_and_metric():
    page = (ROOT / "docs" / "reference" / "records.md").read_text(encoding="utf-8")
    values = {value for name, value in vars(names).items() if name.isupper() and isinstance(value, str)}
    values |= {
        value
        for name, value in vars(names).items()
        if name.isupper() and isinstance(value, tuple)
        for value in value
        if isinstance(value, str) and name != "DIRECTIONS"
    }
    assert not [value for value in sorted(values) if f"`{value}`" not in page]


def test_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250


def own_model_files() -> tuple[str, dict[str, str], list[str]]:
    """The worked example of docs/guides/your-own-model.md: its module, its config option and its command."""
    module, option, command = tagged("own-model")
    module_name = module.code.splitlines()[0].removeprefix("# ").split()[0]
    option_path = option.code.splitlines()[0].removeprefix("# ").split()[0]
    return module_name, {module_name: module.code, option_path: option.code}, shlex.split(command.code, comments=True)


def own_data_files() -> dict[str, str]:
    """The worked example of docs/guides/your-own-data.md: its module and its config option, by path."""
    module, option, _ = tagged("own-data")
    return {block.code.splitlines()[0].removeprefix("# ").split()[0]: block.code for block in (module, option)}


def write_files(folder: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


def test_the_own_model_example_trains_as_the_guide_shows(tmp_path, monkeypatch, store):
    from mnist_tracking.train import train

    module_name, files, command = own_model_files()
    write_files(tmp_path, files)
    monkeypatch.syspath_prepend(str(tmp_path))  # the repository root, where the guide puts the module
    overrides = [arg for arg in command[3:] if not arg.startswith(("data.path=", "trainer.epochs="))]
    cfg = compose_config(
        [
            *overrides,
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            f"data.path={FIXTURE}",
            "trainer.epochs=1",
            f"mlflow.tracking_uri={store}",
        ]
    )
    assert cfg.model._target_.startswith(module_name.removesuffix(".py") + ".")
    metrics = train(cfg)
    [run] = runs(store)
    assert run.info.status == "FINISHED" and 0 <= metrics["test_accuracy"] <= 1


def test_the_own_data_example_trains_as_the_guide_shows(tmp_path, monkeypatch, store):
    from mnist_tracking.train import train

    files = own_data_files()
    write_files(tmp_path, files)
    module_path, option_path = files
    command = tagged("own-data")[2]
    monkeypatch.syspath_prepend(str(tmp_path))  # the repository root, where the guide puts the module
    overrides = [arg for arg in shlex.split(command.code, comments=True)[3:] if not arg.startswith("trainer.epochs=")]
    option_name = Path(option_path).stem
    cfg = compose_config(
        [
            *overrides,
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            f"data.path={FIXTURE}",
            "data.limit_train=400",
            "trainer.epochs=1",
            f"mlflow.tracking_uri={store}",
        ]
    )
    assert f"data={option_name}" in overrides and cfg.data._target_ == f"{Path(module_path).stem}.{option_name}"
    train(cfg)
    [run] = runs(store)
    assert run.info.status == "FINISHED"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        f"{option_name}_{s}" for s in ("train", "validation", "test")
    }
