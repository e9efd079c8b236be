"""Regenerates every image the docs show, and docs/results.md, from fresh runs of the documented experiments.

    python scripts/docs_figures.py --data-path ../shared/data/mnist.npz        # what `make docs-figures` runs
    python scripts/docs_figures.py --data-path ../shared/data/mnist.npz --only epoch_images  # ui_epoch_images.png

Each experiment of docs/results.md runs as the real command line, on the config's default backend, into a store
of its own in a temporary folder. Then its figures are copied from the runs' artifacts into docs/images/, the
MLflow UI's screenshots of the study's store are taken with the workplace's `ui-check` tool (`--ui-check`), and
docs/results.md is written from the runs' recorded values, each result under its provenance: the commit, the
versions, the machine, the date and the command.

One more run, `epoch_images` (5 epochs of the default model), gives ui_epoch_images.png: its per-epoch
validation_sample image enlarged in the MLflow UI, with the step slider. ui-check does not take that view:
scripts/ui_epoch_images.js does, with the Node playwright-core that ui-check installs (`--node-modules`) and
Chromium, against an `mlflow server` started here on the run's store and stopped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
log = logging.getLogger("docs_figures")

# Each result of docs/results.md: the overrides of its command (the data path is added to each).
EXPERIMENTS = {
    "study": ["experiment=study"],
    "normalization": ["-m", "model=mlp64", "seed=0,1,2", "data.normalization=unit,standard"],
    "convnet": ["model=cnn", "optimizer=adam", "trainer.epochs=5"],
    "optuna": ["hparams_search=optuna", "hydra.sweeper.n_trials=8", "trainer.epochs=15"],
}
# Runs that give a figure only, no result: the run whose per-epoch images ui_epoch_images.png shows.
FIGURE_RUNS = {"epoch_images": ["trainer.epochs=5"]}
RUNS = {**EXPERIMENTS, **FIGURE_RUNS}
UI_SHOTS = ("runs.png", "run.png", "metric.png", "artifacts.png", "models.png")
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, as ui-check uses


def command(name: str, data_path: str) -> list[str]:
    return ["python", "-m", "mnist_tracking.train", *RUNS[name], f"data.path={data_path}"]


def run_experiment(name: str, data_path: Path, work: Path) -> mlflow.MlflowClient:
    """Runs experiment `name` in `work/name` (its store: ./mlruns there); returns a client of that store."""
    folder = work / name
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KERAS_BACKEND")}
    args = [sys.executable, *command(name, str(data_path))[1:]]
    log.info("Running %s", " ".join(command(name, str(data_path))))
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return mlflow.MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")


def job_runs(client: mlflow.MlflowClient) -> list[mlflow.entities.Run]:
    """The job runs (not sweep parents) of the store's `mnist` experiment."""
    experiment = client.get_experiment_by_name("mnist")
    return [run for run in client.search_runs([experiment.experiment_id]) if run.data.tags.get("sweep") != "true"]


def parent_run(client: mlflow.MlflowClient) -> mlflow.entities.Run:
    experiment = client.get_experiment_by_name("mnist")
    [parent] = client.search_runs([experiment.experiment_id], filter_string="tags.sweep = 'true'")
    return parent


def copy_artifact(client: mlflow.MlflowClient, run_id: str, path: str, image: str) -> None:
    shutil.copyfile(client.download_artifacts(run_id, path, tempfile.mkdtemp()), IMAGES / image)
    log.info("Wrote docs/images/%s", image)


def at_epoch(client: mlflow.MlflowClient, run_id: str, key: str, epoch: int) -> float:
    """The value of `key` at 1-based `epoch`."""
    return next(m.value for m in client.get_metric_history(run_id, key) if m.step == epoch - 1)


def study_section(client: mlflow.MlflowClient) -> str:
    runs = {("mlp64" if run.data.params["model.hidden_units"] == "64" else "dense"): run for run in job_runs(client)}
    dense, mlp64 = runs["dense"], runs["mlp64"]
    for model, run in runs.items():
        copy_artifact(client, run.info.run_id, "figures/learning_curves.png", f"study_{model}_learning_curves.png")
    copy_artifact(client, mlp64.info.run_id, "figures/misclassified.png", "study_mlp64_misclassified.png")
    copy_artifact(client, mlp64.info.run_id, "figures/confusion_matrix.png", "study_mlp64_confusion_matrix.png")
    d, m = dense.data.metrics, mlp64.data.metrics
    epochs = int(mlp64.data.params["trainer.epochs"])
    rows = [
        ("`dense` params", "7,850", f"{int(dense.data.params['total_params']):,}"),
        (
            f"`dense` train / validation accuracy, epoch {epochs}",
            "≈ 0.92 / ≈ 0.92",
            f"{d['accuracy']:.4f} / {d['val_accuracy']:.4f}",
        ),
        ("`dense` test accuracy", "≈ 0.92", f"**{d['test_accuracy']:.4f}**"),
        ("`mlp64` params", "50,890", f"{int(mlp64.data.params['total_params']):,}"),
        (
            f"`mlp64` validation accuracy, epoch 10 → {epochs}",
            "≈ 0.962 → 0.969",
            f"{at_epoch(client, mlp64.info.run_id, 'val_accuracy', 10):.4f} → **{m['val_accuracy']:.4f}**",
        ),
        (
            f"`mlp64` train accuracy, epoch 10 → {epochs}",
            "≈ 0.974 → 0.986",
            f"{at_epoch(client, mlp64.info.run_id, 'accuracy', 10):.4f} → {m['accuracy']:.4f}",
        ),
        ("`mlp64` test accuracy; macro F1", "", f"{m['test_accuracy']:.4f}; {m['test_macro_f1']:.4f}"),
        ("`dense` test accuracy; macro F1", "", f"{d['test_accuracy']:.4f}; {d['test_macro_f1']:.4f}"),
        ("most-confused test pairs (true→predicted), `mlp64`", "", mlp64.data.tags["most_confused"]),
        ("most-confused test pairs, `dense`", "", dense.data.tags["most_confused"]),
    ]
    table = "| | the study (`tf.keras`) | measured |\n|---|---|---|\n" + "\n".join(
        f"| {what} | {study} | {measured} |" for what, study, measured in rows
    )
    return (
        f"{table}\n\n`mlp64`'s learning curves, its misclassified test digits and its confusion matrix:\n\n"
        "![mlp64 learning curves](images/study_mlp64_learning_curves.png)\n\n"
        "![mlp64 misclassified test digits](images/study_mlp64_misclassified.png)\n\n"
        "![mlp64 confusion matrix](images/study_mlp64_confusion_matrix.png)\n\n"
        "`dense`'s learning curves:\n\n![dense learning curves](images/study_dense_learning_curves.png)\n"
    )


def normalization_section(client: mlflow.MlflowClient) -> str:
    parent = parent_run(client)
    copy_artifact(
        client,
        parent.info.run_id,
        "sweep/val_accuracy_by_seed_group.png",
        "normalization_val_accuracy_by_seed_group.png",
    )
    groups = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep/groups.csv", tempfile.mkdtemp()))
    key = next(column for column in groups.columns if column.endswith("normalization"))

    def cell(row: pd.Series, metric: str) -> str:
        return f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}"

    lines = [
        f"| `{row[key]}` | {int(row['n_seeds'])} | {cell(row, 'val_accuracy')} | {cell(row, 'test_accuracy')} | "
        f"{cell(row, 'val_loss')} |"
        for _, row in groups.iterrows()
    ]
    return (
        "Its `sweep/groups.csv`, mean ± sample standard deviation over the seeds:\n\n"
        "| `data.normalization` | seeds | `val_accuracy` | `test_accuracy` | `val_loss` |\n|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n\n![val_accuracy per epoch, mean ± std over seeds]"
        "(images/normalization_val_accuracy_by_seed_group.png)\n"
    )


def convnet_section(client: mlflow.MlflowClient) -> str:
    [run] = job_runs(client)
    metrics = run.data.metrics
    return (
        f"| params | validation accuracy | test accuracy |\n|---|---|---|\n"
        f"| {int(run.data.params['total_params']):,} | {metrics['val_accuracy']:.4f} | "
        f"**{metrics['test_accuracy']:.4f}** |\n"
    )


def optuna_section(client: mlflow.MlflowClient) -> str:
    parent = parent_run(client)
    copy_artifact(client, parent.info.run_id, "sweep/val_accuracy.png", "optuna_val_accuracy.png")
    best = client.get_run(parent.data.tags["best_run_id"])
    keys = ("optimizer.learning_rate", "model.hidden_units", "data.batch_size")
    chosen = " ".join(
        f"`{key}={float(best.data.params[key]):.4g}`" if key.endswith("rate") else f"`{key}={best.data.params[key]}`"
        for key in keys
    )
    return (
        f"| trials | best trial | its validation accuracy | its test accuracy |\n|---|---|---|---|\n"
        f"| {len(job_runs(client))} | {chosen} | **{best.data.metrics['val_accuracy']:.4f}** | "
        f"{best.data.metrics['test_accuracy']:.4f} |\n\nThe parent's `sweep/val_accuracy.png`:\n\n"
        "![validation accuracy per epoch of each trial](images/optuna_val_accuracy.png)\n"
    )


# What a result depends on: a change to these, not yet committed, is named in the provenance.
CODE = ["mnist_tracking", "conf", "hydra_plugins", "pyproject.toml"]


def machine() -> str:
    """The commit (and whether the code differs from it), the date, the versions and the CPU: one line each."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *CODE], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = ", ".join(f"{package} {version(package)}" for package in ("keras", "jax", "mlflow", "numpy"))
    return "; ".join(
        [
            f"commit `{commit.stdout.strip()}`{' (with uncommitted code changes)' if dirty else ''}, "
            f"{datetime.date.today().isoformat()}",
            f"Python {platform.python_version()}, {versions}",
            f"{cpu}, {os.cpu_count()} cores, {'a GPU' if shutil.which('nvidia-smi') else 'no GPU'}",
        ]
    )


def provenance(name: str, where: str) -> str:
    """The block that says where a result was measured (the docs tests allow dates only inside such blocks)."""
    return (
        f"<!-- provenance -->\n**Provenance:** {where}; "
        f"`{' '.join(command(name, '../shared/data/mnist.npz'))}`.\n<!-- /provenance -->\n"
    )


INTRO = """# Results

Every number on this page was measured by `make docs-figures` (`scripts/docs_figures.py`), which runs each
command below on the full MNIST into a store of its own, copies the figures, and writes this page from the
values the runs recorded. Each result names where it was measured.
"""

SECTIONS = {
    "study": (
        "The study",
        "The seed study's two models, SGD with learning rate 0.01, batch 32, 30 epochs, the last 25% "
        "of the training set held out for validation (`conf/experiment/study.yaml`), on the default backend. "
        "Each run is reproducible: the same command gives the same numbers. Another backend draws other "
        "initial weights from the same seed, so its numbers differ slightly.",
        study_section,
    ),
    "normalization": (
        "Normalization",
        "Why `data.normalization=standard` is the default: one seed-aware sweep, "
        "`mlp64` with each normalization over three seeds. `standard` scales pixels to [0, 1], then "
        "subtracts MNIST's mean and divides by its standard deviation; `unit` only scales.",
        normalization_section,
    ),
    "convnet": (
        "The convnet",
        "`model=cnn` (two blocks of 3×3 convolution and max pooling, dropout, a softmax layer) "
        "with Adam at Keras's default learning rate, 5 epochs.",
        convnet_section,
    ),
    "optuna": (
        "The Optuna search",
        "A TPE search over the learning rate, the hidden layer's width and the batch size "
        "(`conf/hparams_search/optuna.yaml`), 8 trials of 15 epochs.",
        optuna_section,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True, type=Path, help="the full mnist.npz")
    parser.add_argument(
        "--ui-check",
        type=Path,
        default=ROOT.parent / "shared" / "tools" / "ui-check",
        help="the ui-check tool that takes the UI's screenshots (default: ../shared/tools/ui-check)",
    )
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=Path(os.environ.get("UICHECK_HOME", Path.home() / ".cache" / "mnist-ui-check")) / "node_modules",
        help="the folder holding the playwright-core that ui-check installs, for ui_epoch_images.js "
        "(default: $UICHECK_HOME/node_modules, else ~/.cache/mnist-ui-check/node_modules)",
    )
    parser.add_argument("--only", default=",".join(RUNS), help=f"runs to make, of {','.join(RUNS)} (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.only.split(",")
    if unknown := [name for name in names if name not in RUNS]:
        raise SystemExit(f"--only: unknown {unknown}; the runs are {list(RUNS)}")
    if "study" in names and not args.ui_check.exists():
        raise SystemExit(f"--ui-check {args.ui_check}: no such tool; the UI's screenshots need it")
    if "epoch_images" in names:
        needs = {
            f"playwright-core in {args.node_modules} (ui-check installs it on first use)": (
                args.node_modules / "playwright-core"
            ).is_dir(),
            "node on PATH": shutil.which("node") is not None,
            f"Chromium at {CHROMIUM}": CHROMIUM.exists(),
        }
        if missing := [what for what, there in needs.items() if not there]:
            raise SystemExit(f"ui_epoch_images.png needs {', '.join(missing)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="docs-figures-"))
    where = machine()  # before anything runs: the state of the code the results come from
    parts = [INTRO]
    for name in names:
        client = run_experiment(name, args.data_path.resolve(), work)
        if name == "epoch_images":
            epoch_images_screenshot(client, work / name, args.node_modules)
            continue
        title, text, section = SECTIONS[name]
        parts.append(
            f"## {title}\n\n{text}\n\n```bash\n{' '.join(command(name, '../shared/data/mnist.npz'))}\n```"
            f"\n\n{section(client)}\n{provenance(name, where)}"
        )
        if name == "study":
            screenshots(args.ui_check, work / "study")
    if [name for name in names if name in EXPERIMENTS] == list(EXPERIMENTS):
        (ROOT / "docs" / "results.md").write_text("\n".join(parts), encoding="utf-8")
        log.info("Wrote docs/results.md")
    elif any(name in EXPERIMENTS for name in names):
        log.info("Not all experiments ran: docs/results.md left as it is. What they gave:\n%s", "\n".join(parts))


def screenshots(ui_check: Path, folder: Path) -> None:
    """The MLflow UI on the study's store, as users see it: runs table, a run, a metric chart, artifacts, models."""
    out = Path(tempfile.mkdtemp(prefix="ui-check-"))
    done = subprocess.run(
        [
            str(ui_check),
            "--python",
            sys.executable,
            "--tracking-uri",
            f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
            "--experiment",
            "mnist",
            "--out",
            str(out),
            "--metric",
            "val_accuracy",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"ui-check failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    for shot in UI_SHOTS:
        shutil.copyfile(out / shot, IMAGES / shot)
        log.info("Wrote docs/images/%s", shot)
    json.loads((out / "summary.json").read_text())  # the tool's own record that it saw the runs


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` on the store in `folder/mlruns` (127.0.0.1, a free port, one worker) while the block runs;
    yields its URL. The server and its workers form a process group of their own, stopped as one afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="mlflow-server-"))  # its cwd: a default ./mlartifacts lands here
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    args = ["--backend-store-uri", f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}", "--host", "127.0.0.1"]
    with open(home / "server.log", "w") as server_log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", *args, "--port", str(port), "--workers", "1"],
            cwd=home,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = (home / "server.log").read_text()[-3000:]
                    raise SystemExit(f"mlflow server on {folder} did not come up:\n{tail}") from None
                time.sleep(0.5)
        log.info("mlflow server (pid %d) up on %s", server.pid, url)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # whatever of the group outlived the TERM
        server.wait()
        shutil.rmtree(home, ignore_errors=True)


def epoch_images_screenshot(client: mlflow.MlflowClient, folder: Path, node_modules: Path) -> None:
    """ui_epoch_images.png: the run's validation_sample image at its first epoch, enlarged in the MLflow UI, with
    the slider that steps through the epochs (scripts/ui_epoch_images.js takes it)."""
    [run] = job_runs(client)
    with mlflow_server(folder) as url:
        done = subprocess.run(
            [
                "node",
                str(ROOT / "scripts" / "ui_epoch_images.js"),
                "--run-url",
                f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}",
                "--out",
                str(IMAGES / "ui_epoch_images.png"),
                "--chromium",
                str(CHROMIUM),
            ],
            env={**os.environ, "NODE_PATH": str(node_modules)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    if done.returncode != 0:
        raise SystemExit(f"ui_epoch_images.js failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log.info("Wrote docs/images/ui_epoch_images.png")


if __name__ == "__main__":
    main()
