"""Regenerates tests/data/store-0a59a1d.tar.gz: an MLflow store written by the release at commit 0a59a1d, which
tests/test_compat.py continues with the current code (`sweep.skip_finished=true` skips its finished jobs; a run it
left stopped is continued by `trainer.resume=auto`).

    .venv/bin/python scripts/make_compat_store.py          # ~2 min; writes tests/data/store-0a59a1d.tar.gz

Everything in the store is written by the code of 0a59a1d, run as a user of that release runs it: a detached git
worktree of the commit at STORE_DIR (removed at the end), the command `python -m mnist_tracking.train ...` started
there (PYTHONPATH=STORE_DIR, checked: the worktree's package is the one imported), its default store
(STORE_DIR/mlruns: mlflow.db and artifacts/). Only the installed packages (.venv) are today's. The runs' git
commit tag (`mlflow.source.git.commit`) is the commit's.

1. A stopped run: STOPPED_ARGS, started, and sent SIGINT (to its process group, as Ctrl-C) once its first epoch's
   checkpoint is on record (its `checkpoint_epoch` tag, polled in the store): KILLED, 1 epoch of metrics, the
   checkpoint artifact. Its epochs are made slow (trainer.fast=false, batch size 1) so that the signal lands in its
   second epoch; a stop that misses is retried from an empty store.
2. A finished sweep: SWEEP_ARGS (model=dense,mlp64, 2 epochs): a FINISHED parent, two FINISHED jobs.

The data is the committed fixture tests/data/mnist_small.npz, copied to DATA_PATH. Not Keras's cache
(data.path=null): Keras checks the cached mnist.npz against the real MNIST's sha256, and downloads it over the
fixture when it differs. A job's `config_hash` includes the resolved data.path, so the path is fixed, outside the
store (DATA_PATH): tests that train on these runs put the fixture there again.

The store's database records absolute paths under STORE_DIR (artifact locations, the runs' commands, the local
checkpoint copy): tests/test_compat.py rewrites that prefix to where it extracts the archive. The archive holds
mlruns/ (less the lock file) and compat.json: the commit, STORE_DIR, DATA_PATH, both commands, the run ids, and each
job's config_hash input (its logged, resolved config less what config_hash leaves out; checked here against the
recorded hash).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0a59a1d"
STORE_DIR = Path("/tmp/mnist-tracking-0a59a1d-store")  # the launch dir: a worktree of COMMIT; the store is mlruns/
DATA_PATH = Path("/tmp/mnist-tracking-0a59a1d-data/mnist_small.npz")  # not under STORE_DIR: it is never rewritten
FIXTURE = ROOT / "tests" / "data" / "mnist_small.npz"
OUT = ROOT / "tests" / "data" / "store-0a59a1d.tar.gz"

SMALL = [f"data.path={DATA_PATH}", "data.limit_train=400", "data.limit_test=100"]
SWEEP_ARGS = ["-m", "model=dense,mlp64", *SMALL, "trainer.epochs=2"]
# 300 steps of one image an epoch, one call each: ~1 s an epoch, time to stop it in its second.
STOPPED_ARGS = ["model=mlp64", *SMALL, "trainer.epochs=3", "trainer.fast=false", "data.batch_size=1"]


def old_env() -> dict[str, str]:
    """The environment of the old command: its own package first, its default store, its default backend."""
    drop = {"MLFLOW_TRACKING_URI", "KERAS_BACKEND", "KERAS_HOME", "SLURM_JOB_ID", "SLURM_RESTART_COUNT", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"PYTHONPATH": str(STORE_DIR), "PYTHONUNBUFFERED": "1"}


def old_cli(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_tracking.train", *args],
        cwd=STORE_DIR,
        env=old_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_worktree() -> str:
    """STORE_DIR as a detached worktree of COMMIT; returns the commit's full hash."""
    if STORE_DIR.exists():
        raise SystemExit(f"{STORE_DIR} exists: remove it first (git worktree remove --force {STORE_DIR}).")
    git("worktree", "add", "--detach", str(STORE_DIR), COMMIT)
    imported = subprocess.run(
        [sys.executable, "-c", "import mnist_tracking; print(mnist_tracking.__file__)"],
        cwd=STORE_DIR,
        env=old_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(imported) != STORE_DIR / "mnist_tracking" / "__init__.py":
        raise SystemExit(f"the old command would import {imported}, not the worktree's package")
    return git("rev-parse", COMMIT)


def checkpoint_epoch(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute("SELECT value FROM tags WHERE key = 'checkpoint_epoch'").fetchone()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return None
    return row and row[0]


def stop_after_first_checkpoint() -> str:
    """Runs STOPPED_ARGS and Ctrl-C's it once its epoch-0 checkpoint is on record; returns its output."""
    proc = old_cli(STOPPED_ARGS, start_new_session=True)
    db = STORE_DIR / "mlruns" / "mlflow.db"
    deadline = time.monotonic() + 600
    while checkpoint_epoch(db) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return out


def client():
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{STORE_DIR / 'mlruns' / 'mlflow.db'}")


def all_runs() -> list:
    c = client()
    return c.search_runs([c.get_experiment_by_name("mnist").experiment_id])


def epochs_recorded(run_id: str) -> int:
    return len(client().get_metric_history(run_id, "loss"))


def hash_input(run_id: str) -> dict:
    """What 0a59a1d's config_hash hashes for a job: its logged resolved config less mlflow, sweep,
    trainer.resume and trainer.checkpoint_every (data.path is absolute already). Checked against its tag."""
    import yaml

    c = client()
    container = yaml.safe_load(Path(c.download_artifacts(run_id, "config/config.yaml", tempfile.mkdtemp())).read_text())
    for key in ("mlflow", "sweep"):
        container.pop(key, None)
    for key in ("resume", "checkpoint_every"):
        container["trainer"].pop(key, None)
    digest = hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]
    recorded = c.get_run(run_id).data.tags["config_hash"]
    if digest != recorded:
        raise SystemExit(f"run {run_id}: its logged config hashes to {digest}, its config_hash tag is {recorded}")
    return container


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help=f"leave the worktree and store at {STORE_DIR}")
    args = parser.parse_args()

    DATA_PATH.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE, DATA_PATH)
    commit = make_worktree()
    try:
        started = time.monotonic()
        for attempt in range(1, 4):
            out = stop_after_first_checkpoint()
            [run] = all_runs()
            ok = (
                run.info.status == "KILLED"
                and run.data.tags.get("checkpoint_epoch") == "0"
                and epochs_recorded(run.info.run_id) == 1
            )
            print(
                f"stopped run, attempt {attempt}: {run.info.status}, checkpoint_epoch "
                f"{run.data.tags.get('checkpoint_epoch')}, {epochs_recorded(run.info.run_id)} epoch(s) recorded"
            )
            if ok:
                break
            shutil.rmtree(STORE_DIR / "mlruns")
        else:
            raise SystemExit(f"could not stop the run in its second epoch:\n{out}")
        stopped = run.info.run_id
        artifacts = [a.path for a in client().list_artifacts(stopped, "checkpoint")]
        assert artifacts == ["checkpoint/checkpoint.npz"], artifacts

        proc = old_cli(SWEEP_ARGS)
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed:\n{out}")
        runs = all_runs()
        [parent] = [r for r in runs if r.data.tags.get("sweep") == "true"]
        jobs = {
            next(o for o in json.loads(r.data.tags["overrides"]) if o.startswith("model=")): r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        }
        assert parent.info.status == "FINISHED" and len(runs) == 4, [(r.info.run_id, r.info.status) for r in runs]
        assert sorted(jobs) == ["model=dense", "model=mlp64"], sorted(jobs)
        assert all(r.info.status == "FINISHED" and epochs_recorded(r.info.run_id) == 2 for r in jobs.values())
        print(f"store written in {time.monotonic() - started:.0f} s")

        manifest = {
            "commit": commit,
            "store_prefix": str(STORE_DIR),
            "data_path": str(DATA_PATH),
            "data_sha256": hashlib.sha256(FIXTURE.read_bytes()).hexdigest(),
            "sweep_args": SWEEP_ARGS,
            "stopped_args": STOPPED_ARGS,
            "runs": {
                "sweep_parent": parent.info.run_id,
                "sweep_jobs": {key: r.info.run_id for key, r in jobs.items()},
                "stopped": stopped,
            },
            "sweep_hash": parent.data.tags["sweep_hash"],
            "config_hash_inputs": {
                r.info.run_id: {"config_hash": r.data.tags["config_hash"], "input": hash_input(r.info.run_id)}
                for r in [*jobs.values(), client().get_run(stopped)]
            },
            "written_with": {
                "python": sys.version.split()[0],
                **{name: version(name) for name in ("mlflow", "keras", "jax", "hydra-core")},
            },
            "written_by": "scripts/make_compat_store.py",
        }
        (STORE_DIR / "compat.json").write_text(json.dumps(manifest, indent=2) + "\n")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.out, "w:gz", compresslevel=9) as tar:
            tar.add(STORE_DIR / "compat.json", "compat.json")
            tar.add(STORE_DIR / "mlruns", "mlruns", filter=lambda info: None if info.name.endswith(".lock") else info)
        print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB")
        print(json.dumps(manifest, indent=2))
    finally:
        if not args.keep:
            git("worktree", "remove", "--force", str(STORE_DIR))


if __name__ == "__main__":
    main()
