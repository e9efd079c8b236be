"""Helpers shared by the tests: the fixture data, composed configs, the CLI in a subprocess, reading a store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
FIXTURE = ROOT / "tests" / "data" / "mnist_small.npz"  # 2,000 train + 500 test real MNIST digits
# Shrinks a run to seconds: the fixture, 2 epochs.
# The Keras backend of this test process: $KERAS_BACKEND (`make test` runs the training tests on each), else the
# config's default. Set before anything imports Keras (conftest imports this module first).
BACKEND = os.environ.setdefault("KERAS_BACKEND", str(OmegaConf.load(CONF_DIR / "config.yaml").backend))
QUICK = [f"data.path={FIXTURE}", "trainer.epochs=2", f"backend={BACKEND}"]


def compose_config(overrides: list[str]) -> DictConfig:
    """Composes conf/config.yaml as @hydra.main would, and makes it the current Hydra job."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the task function never sees the hydra node
    return cfg


def runs(uri: str, experiment: str = "mnist") -> list[mlflow.entities.Run]:
    """All runs of `experiment` in the store at `uri` (none when the store or experiment is absent)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


ARTIFACTS = {
    "model_summary.txt",
    "config/config.yaml",
    "config/overrides.yaml",
    "figures/learning_curves.png",
    "figures/misclassified.png",
    "figures/confusion_matrix.png",
}


def artifact_paths(client: mlflow.MlflowClient, run_id: str, path: str = "") -> set[str]:
    """Every file under a run's artifact root."""
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment for a command in a subprocess, less the MLFLOW_TRACKING_URI that
    mlflow.set_tracking_uri exports here: the command's runs go to its own default store (./mlruns)."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | extra


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, dirs: bool = True, **kwargs) -> subprocess.Popen:
    """Starts `python -m mnist_tracking.train ARGS` in `cwd` with Hydra's outputs kept under it
    (in fixed `outputs` and `multirun` folders, or with `dirs=False` where the config puts them)."""
    fixed = [f"hydra.run.dir={cwd}/outputs", f"hydra.sweep.dir={cwd}/multirun"] if dirs else []
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_tracking.train", *args, *fixed],
        cwd=cwd,
        env=cli_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
        **kwargs,
    )


def default_sigint() -> None:
    """Ctrl-C's default in a command a test starts, as a terminal gives it: a suite started as a script's
    background job (`bash .ci/run &`) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, dirs: bool = True) -> tuple[int, str]:
    proc = cli(args, cwd, env, dirs)
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()  # a hung command must not outlive its test
        out, _ = proc.communicate()
        raise AssertionError(f"{args} ran over 10 minutes:\n{out}") from None
    return proc.returncode, out


def read_until(proc: subprocess.Popen, text: str, count: int = 1) -> str:
    """Reads the command's output until `count` lines have said `text`; returns what it read."""
    seen, found = [], 0
    for line in proc.stdout:
        seen.append(line)
        found += text in line
        if found >= count:
            return "".join(seen)
    raise AssertionError(f"the command ended before {count} line(s) said {text!r}:\n{''.join(seen)}")


def signal_while_training(
    args: list[str], cwd: Path, sig: int = signal.SIGTERM, env: dict[str, str] | None = None, jobs: int = 1
) -> tuple[int, str]:
    """Starts the CLI on a long run and, once `jobs` jobs are training, sends it `sig`; returns exit status and output.

    SIGINT goes to the CLI's whole process group, as a terminal's Ctrl-C does; other signals to the CLI alone.
    """
    proc = cli([*args, "trainer.epochs=500"], cwd, env, start_new_session=True)
    watchdog = threading.Timer(600, lambda: os.killpg(proc.pid, signal.SIGKILL))  # a hung start must not hang CI
    watchdog.start()
    try:
        seen = read_until(proc, "epoch 2/500", jobs)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, seen + out


# A 4-job grid on the fixture, one epoch each.
GRID = ["-m", "model=dense,mlp64", "optimizer.learning_rate=0.01,0.1", "trainer.epochs=1", f"data.path={FIXTURE}"]


def store_of(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def sweep_runs(
    store: str, experiment: str = "mnist"
) -> tuple[list[mlflow.entities.Run], dict[str, list[mlflow.entities.Run]]]:
    """The sweep parents (oldest first) in `experiment` and each parent's children."""
    everything = runs(store, experiment)
    parents = sorted((r for r in everything if r.data.tags.get("sweep") == "true"), key=lambda r: r.info.start_time)
    children = {
        p.info.run_id: [r for r in everything if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        for p in parents
    }
    return parents, children


def assert_complete_child(client: mlflow.MlflowClient, run: mlflow.entities.Run, epochs: int = 1) -> None:
    assert run.info.status == "FINISHED"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, name)) == epochs, name
    assert {"test_accuracy", "test_loss"} <= run.data.metrics.keys()
    assert ARTIFACTS <= artifact_paths(client, run.info.run_id)


def report_table(client: mlflow.MlflowClient, parent_id: str) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(parent_id, "sweep/summary.csv"))
