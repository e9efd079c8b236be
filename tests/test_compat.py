"""Runs recorded by the release at commit 0a59a1d still count when this code runs their commands again.

tests/data/store-0a59a1d.tar.gz is a store that the code of 0a59a1d wrote (scripts/make_compat_store.py says how):
a FINISHED sweep over model=dense,mlp64 (2 epochs) and a single mlp64 run (3 epochs) stopped by Ctrl-C after its
first epoch's checkpoint (KILLED). Its compat.json names the commit, both commands and the run ids.

The sweep's command again with sweep.skip_finished=true trains nothing: each job stands on its old run. The single
run's command again continues the stopped run (trainer.resume=auto). Both find the old runs by their `config_hash`
tag alone: anything that changes what config_hash hashes (a moved model `_target_`, a config key added, renamed or
left out) leaves every recorded run behind. The first tests say so directly, naming the keys that differ.

The old runs trained on the fixture at an absolute path (compat.json's data_path): config_hash includes the resolved
data.path, and Keras's cache (data.path=null) holds only the real MNIST, checked by its sha256. The test that
trains puts the fixture there again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.names import REGISTERED_MODEL_TAG
from mnist_tracking.tracking.identity import config_hash, sweep_hash
from mnist_tracking.train import train
from tests.helpers import BACKEND, CONF_DIR, FIXTURE, ROOT, compose_config, report_table, run_cli, runs, sweep_runs

ARCHIVE = ROOT / "tests" / "data" / "store-0a59a1d.tar.gz"
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# What config_hash leaves out (where and how a run is tracked and kept): never part of its meaning.
UNHASHED = ("mlflow.", "sweep.", "trainer.resume", "trainer.checkpoint_every")

jax_only = pytest.mark.skipif(
    BACKEND != "jax",
    reason=f"the old runs trained on JAX; this process runs Keras on {BACKEND}, and a process cannot switch",
)


@dataclass
class OldStore:
    launch_dir: Path  # where the old commands ran: their default store is launch_dir/mlruns
    uri: str
    manifest: dict[str, Any]

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.uri)

    def run(self, run_id: str) -> mlflow.entities.Run:
        return self.client.get_run(run_id)

    @property
    def sweep_jobs(self) -> dict[str, str]:
        """The old sweep's job run ids by their swept override (model=dense, model=mlp64)."""
        return self.manifest["runs"]["sweep_jobs"]

    @property
    def stopped(self) -> str:
        return self.manifest["runs"]["stopped"]


def relocate(database: Path, old: str, new: str) -> None:
    """Replaces the absolute prefix `old` by `new` in every text value of the SQLite store (artifact locations of
    experiments, runs and logged models, model versions' storage, the runs' commands and local checkpoint copies)."""
    with contextlib.closing(sqlite3.connect(database)) as con:
        with con:
            tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in [row[1] for row in con.execute(f'PRAGMA table_info("{table}")')]:
                    con.execute(
                        f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                        f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                        (old, new, old),
                    )
        left = [line for line in con.iterdump() if old in line]
    assert not left, f"{old} is still in the store after relocating it:\n" + "\n".join(left[:5])


@pytest.fixture
def old_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OldStore:
    """The store 0a59a1d wrote, extracted into tmp_path/launch, its paths rewritten to there; the test runs from it."""
    launch = tmp_path / "launch"
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(launch, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # 3.11.4+
    manifest = json.loads((launch / "compat.json").read_text())
    assert Path(manifest["store_prefix"]) != launch
    relocate(launch / "mlruns" / "mlflow.db", manifest["store_prefix"], str(launch))
    monkeypatch.chdir(launch)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = OldStore(launch, f"sqlite:///{launch / 'mlruns' / 'mlflow.db'}", manifest)
    # What the archive holds, as compat.json says: the sweep and its two jobs FINISHED, the single run KILLED.
    statuses = {r.info.run_id: r.info.status for r in runs(store.uri)}
    assert statuses == {
        manifest["runs"]["sweep_parent"]: "FINISHED",
        store.stopped: "KILLED",
        **{run_id: "FINISHED" for run_id in store.sweep_jobs.values()},
    }
    yield store
    mlflow.end_run()


def provide_data(path: Path, sha256: str) -> None:
    """The fixture at the absolute path the old runs trained on (compat.json's data_path), as they had it."""
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        return
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == sha256, (
        f"{FIXTURE} is not the file the old runs trained on: regenerate {ARCHIVE.name} (scripts/make_compat_store.py)"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        shutil.copyfile(FIXTURE, partial)
        os.replace(partial, path)  # whole or not at all, for a test running at the same time
    except OSError as exc:
        pytest.fail(
            f"cannot put the fixture at {path}, where the old runs had it (their config_hash includes the path): {exc}"
        )


def hashed_leaves(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config's leaves by dotted key (lists whole), less what config_hash leaves out."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(config, "")
    return {key: value for key, value in flat.items() if not key.startswith(UNHASHED)}


def changed_keys(store: OldStore, run_id: str, cfg: DictConfig) -> str:
    """The config keys whose resolved values differ between what the old run logged (config/config.yaml) and `cfg`."""
    logged = yaml.safe_load(
        Path(store.client.download_artifacts(run_id, "config/config.yaml", str(store.launch_dir))).read_text()
    )
    old, now = hashed_leaves(logged), hashed_leaves(OmegaConf.to_container(cfg, resolve=True))
    lines = [
        f"  {key}: {old.get(key, '<absent>')!r} (0a59a1d) vs {now.get(key, '<absent>')!r} (now)"
        for key in sorted(old.keys() | now.keys())
        if old.get(key, "<absent>") != now.get(key, "<absent>")
    ]
    return "\n".join(lines) or "  none: the resolved config is the same, so config_hash itself hashes it differently"


@pytest.mark.parametrize("job", ["model=dense", "model=mlp64", "stopped"])
def test_config_hash_keeps_its_meaning_for_the_old_runs(old_store, job):
    run_id = old_store.stopped if job == "stopped" else old_store.sweep_jobs[job]
    run = old_store.run(run_id)
    overrides = json.loads(run.data.tags["overrides"])  # the job's own command-line overrides
    cfg = compose_config(overrides)
    recorded, now = run.data.tags["config_hash"], config_hash(cfg)
    assert now == recorded, (
        f"config_hash changed its meaning: run {run_id} ({' '.join(overrides)}), recorded by 0a59a1d with "
        f"config_hash {recorded}, hashes to {now} now, so skip_finished and trainer.resume=auto no longer find it "
        f"(nor any run recorded before). Keys that differ:\n{changed_keys(old_store, run_id, cfg)}"
    )


def test_sweep_hash_keeps_its_meaning_for_the_old_sweep(old_store):
    """The old sweep's command composes, as a multirun, to the sweep_hash its parent run recorded."""
    overrides = [arg for arg in old_store.manifest["sweep_args"] if arg != "-m"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = GlobalHydra.instance().hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN)
    parent = old_store.run(old_store.manifest["runs"]["sweep_parent"])
    assert sweep_hash(config) == parent.data.tags["sweep_hash"], (
        f"sweep_hash changed its meaning: `{' '.join(old_store.manifest['sweep_args'])}` hashes differently from "
        f"sweep {parent.info.run_id} of 0a59a1d (recorded {parent.data.tags['sweep_hash']}), so running a stopped "
        "sweep's command again no longer continues it"
    )


@jax_only
def test_skip_finished_stands_each_old_job_on_its_run(old_store, caplog):
    """train() of each old sweep job's config with sweep.skip_finished=true returns the old run's metrics and
    records nothing."""
    for job, run_id in old_store.sweep_jobs.items():
        old = old_store.run(run_id)
        cfg = compose_config(
            [
                *json.loads(old.data.tags["overrides"]),
                "sweep.skip_finished=true",
                f"mlflow.tracking_uri={old_store.uri}",
            ]
        )
        with caplog.at_level(logging.INFO):
            metrics = train(cfg)
        assert len(runs(old_store.uri)) == 4, (  # no run added
            f"{job} was trained again: its old run {run_id} does not stand for it\n{caplog.text[-3000:]}"
        )
        assert metrics == old.data.metrics, job  # the old run's own, as a sweep's report takes them
        assert len(old_store.client.get_metric_history(run_id, "loss")) == 2  # the old run untouched


@jax_only
def test_the_old_stopped_run_continues_in_the_same_run(old_store, caplog):
    """The stopped run's command (trainer.resume=auto) continues it from its second epoch (epoch 1, 0-based)."""
    provide_data(Path(old_store.manifest["data_path"]), old_store.manifest["data_sha256"])
    client = old_store.client
    killed = old_store.run(old_store.stopped)
    assert killed.data.tags["checkpoint_epoch"] == "0"
    assert [a.path for a in client.list_artifacts(old_store.stopped, "checkpoint")] == ["checkpoint/checkpoint.npz"]
    first_epoch = {
        name: [m.value for m in client.get_metric_history(old_store.stopped, name)] for name in EPOCH_METRICS
    }
    assert all(len(values) == 1 for values in first_epoch.values()), first_epoch

    cfg = compose_config([*json.loads(killed.data.tags["overrides"]), f"mlflow.tracking_uri={old_store.uri}"])
    assert cfg.trainer.resume == "auto"  # the default
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)

    assert len(runs(old_store.uri)) == 4, (  # no new run: the old one continued
        f"the stopped run {old_store.stopped} was not continued\n{caplog.text[-3000:]}"
    )
    run = old_store.run(old_store.stopped)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from_epoch"] == "1" and run.data.tags["attempts"] == "2"
    assert run.data.tags["attempt_2_from_epoch"] == "1"
    assert run.data.tags["checkpoint_epoch"] == "2"
    assert run.data.tags["config_hash"] == killed.data.tags["config_hash"]
    for name in EPOCH_METRICS:
        history = sorted(client.get_metric_history(old_store.stopped, name), key=lambda m: m.step)
        assert [m.step for m in history] == [0, 1, 2], name
        assert history[0].value == first_epoch[name][0], name  # the old epoch's record kept as it was
    assert {"test_accuracy", "test_loss"} <= run.data.metrics.keys()
    assert metrics["val_accuracy"] == pytest.approx(run.data.metrics["val_accuracy"])


@pytest.mark.slow
def test_the_old_sweeps_command_with_skip_finished_trains_nothing(old_store):
    """The old sweep's command again, with sweep.skip_finished=true: a new sweep whose jobs are the old runs."""
    args = [*old_store.manifest["sweep_args"], "sweep.skip_finished=true"]
    code, out = run_cli(args, old_store.launch_dir)
    assert code == 0, out
    old_parent = old_store.manifest["runs"]["sweep_parent"]
    (first, second), children = sweep_runs(old_store.uri)
    assert first.info.run_id == old_parent and second.info.status == "FINISHED", out
    assert children[second.info.run_id] == [], out  # no job trained
    assert len(runs(old_store.uri)) == 5  # the 4 old runs and the new parent
    reused = {key.removeprefix("reused_run.") for key in second.data.tags if key.startswith("reused_run.")}
    assert reused == set(old_store.sweep_jobs.values())
    for run_id in old_store.sweep_jobs.values():
        assert len(old_store.client.get_metric_history(run_id, "loss")) == 2  # the old runs untouched
    table = report_table(old_store.client, second.info.run_id)
    assert set(table["run_id"]) == set(old_store.sweep_jobs.values())
    # The best old job's model (logged by 0a59a1d) is registered again, by this sweep, in the same store only.
    assert second.data.tags[REGISTERED_MODEL_TAG] == "mnist-best/2", out
    assert not (old_store.launch_dir / "mlflow.db").exists()
