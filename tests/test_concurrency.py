"""Commands started at the same time on one fresh launch directory: all succeed, even when one is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest

from mnist_tracking.runtime import cache
from tests.helpers import FIXTURE, cli_env, runs, store_of, sweep_runs

pytestmark = pytest.mark.slow
TINY = ["trainer.epochs=1", f"data.path={FIXTURE}", "data.limit_train=400", "data.limit_test=100"]


def start(args: list[str], cwd: Path, name: str, env: dict[str, str]) -> subprocess.Popen:
    """The CLI in `cwd` (so all share its default store), with Hydra's outputs in a folder of its own."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnist_tracking.train",
            *args,
            f"hydra.run.dir={cwd}/{name}",
            f"hydra.sweep.dir={cwd}/{name}",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def three_commands(cwd: Path, env: dict[str, str] | None = None) -> dict[str, subprocess.Popen]:
    """Two 2-job sweeps and a single run, started at once."""
    env = env or cli_env()
    return {
        "sweep_a": start(["-m", "model=dense,mlp64", *TINY], cwd, "sweep_a", env),
        "sweep_b": start(["-m", "model=dense", "seed=1,2", *TINY], cwd, "sweep_b", env),
        "single": start(["model=dense", "seed=3", *TINY], cwd, "single", env),
    }


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"a command ran over 10 minutes (waiting on a lock?):\n{out}") from None
    return proc.returncode, out


def lock_holder(lock: Path) -> int | None:
    """The pid holding an flock on `lock`, from the kernel's own table (/proc/locks)."""
    try:
        inode = lock.stat().st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields and int(fields[5].rsplit(":", 1)[-1]) == inode:
            return int(fields[4])
    return None


def assert_all_recorded(cwd: Path, sweeps: int, singles: int) -> None:
    """`sweeps` FINISHED parents with 2 FINISHED children each, and `singles` FINISHED runs with no parent,
    all in the `mnist` experiment and nothing in `Default`."""
    store = store_of(cwd)
    parents, children = sweep_runs(store)
    assert len(parents) == sweeps and all(p.info.status == "FINISHED" for p in parents)
    for parent in parents:
        jobs = children[parent.info.run_id]
        assert len(jobs) == 2 and {j.info.status for j in jobs} == {"FINISHED"}
    everything = runs(store)
    alone = [r for r in everything if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("sweep") != "true"]
    assert len(alone) == singles and {r.info.status for r in alone} <= {"FINISHED"}
    assert len(everything) == 3 * sweeps + singles
    assert runs(store, "Default") == []


def test_three_commands_at_once_on_a_fresh_store_all_succeed(tmp_path):
    procs = three_commands(tmp_path)
    for name, proc in procs.items():
        code, out = finish(proc)
        assert code == 0, f"{name}:\n{out}"
        assert "duplicate column" not in out and "Traceback" not in out, out
    assert_all_recorded(tmp_path, sweeps=2, singles=1)


def without_cached_store(tmp_path: Path) -> dict[str, str]:
    """The commands' environment with a user cache of its own, where no empty store is kept yet: MLflow builds the
    store step by step (~1 s). Matplotlib's cache and JAX's compilation cache stay where they were."""
    return cli_env(
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        MPLCONFIGDIR=matplotlib.get_cachedir(),
        JAX_COMPILATION_CACHE_DIR=str(cache.jax_compilation_cache()),
    )


def test_a_command_killed_while_creating_the_store_holds_up_no_other(tmp_path):
    procs = three_commands(tmp_path, without_cached_store(tmp_path))
    lock = tmp_path / "mlruns" / "mlflow.db.lock"
    deadline = time.monotonic() + 120
    holder = None
    while holder is None:  # the store takes ~1 s to build: the lock is held that long
        assert time.monotonic() < deadline, "no command ever took the store's lock"
        assert all(p.poll() is None for p in procs.values()), "a command ended before the store was created"
        holder = lock_holder(lock)
        time.sleep(0.005)
    [killed] = [name for name, p in procs.items() if p.pid == holder]
    os.kill(holder, signal.SIGKILL)
    assert finish(procs.pop(killed))[0] == -signal.SIGKILL
    for name, proc in procs.items():
        code, out = finish(proc)
        assert code == 0, f"{name}:\n{out}"
    assert not list((tmp_path / "mlruns").glob(".mlflow.db.*.tmp"))  # the killed command's half-built store is gone
    assert_all_recorded(
        tmp_path, sweeps=sum(name.startswith("sweep") for name in procs), singles=int("single" in procs)
    )


def test_report_in_an_empty_directory_says_so_and_creates_nothing(tmp_path):
    env = cli_env()
    out = subprocess.run(
        [sys.executable, "-m", "mnist_tracking.report"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert f"No MLflow store at sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []
