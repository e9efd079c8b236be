"""The authenticated team server (deploy/team-server) against a plain one, on loopback.

    python -m benchmarks.bench_server                 # from the repository's root; ~10 min on 2 cores
    python -m benchmarks.bench_server --markdown      # also writes benchmarks/SERVER_RESULTS.md

A module of the repository rather than a script: it starts its servers with the tests' helpers (tests/servers.py,
tests/stack.py).

Rows: the same one-epoch `dense` run (the real CLI in a subprocess, `data.limit_train`, on `--data-path`, by default
the tests' small data) from process start to exit, against a plain server (PostgreSQL, `mlflow server`, HTTP, no
login) and against the authenticated stack over TLS, with MLflow's credential cache on (the script's default, 60 s)
and off (the password's hash checked on every request); the median of `--repeats` alternating runs each, and
the ratio to plain. Then the load: two users' two joblib sweeps of 6 one-epoch jobs (2 workers each) and two single
runs at once against the stack: the wall time, the requests nginx served (its access log), their rate, the
latency percentiles of nginx's `$request_time`, and the responses that were not 2xx, by status and request.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.bench_train import ROOT, Rows, provenance
from tests.servers import mlflow_server, postgres
from tests.stack import Stack, grant_team, team_stack

FIXTURE = ROOT / "tests" / "data" / "mnist_small.npz"
LINE = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d{3}) \d+ (?P<seconds>[\d.]+) ')


def one_run(env: dict[str, str], data: Path, limit: int, cwd: Path) -> float:
    """Seconds from start to exit of a one-epoch dense run, logging as `env` says."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mnist_tracking.train", "model=dense", "trainer.epochs=1", f"data.path={data}"]
        + [f"data.limit_train={limit}", f"hydra.run.dir={cwd}/outputs", "mlflow.experiment_name=bench"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    return time.perf_counter() - started


def user_env(stack: Stack, user: str) -> dict[str, str]:
    # REQUESTS_CA_BUNDLE too: what `requests` itself trusts, for a client that checks the server through it.
    return {**base_env(), **stack.client_env(user), "REQUESTS_CA_BUNDLE": str(stack.ca)}


def base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"PYTHONPATH": str(ROOT)}


def load(stack: Stack, data: Path, work: Path) -> dict[str, str]:
    """The load scenario against `stack`; what nginx saw of it."""
    log = stack.dir / "logs" / "access.log"
    skip = log.stat().st_size
    sweep = ["-m", "model=dense,mlp64", "seed=1,2,3", "trainer.epochs=1", f"data.path={data}"]
    sweep += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    single = ["trainer.epochs=1", f"data.path={data}"]
    started = time.perf_counter()
    procs = []
    for i, (user, args) in enumerate([("alice", sweep), ("bob", sweep), ("alice", single), ("bob", single)]):
        cwd = work / f"load{i}"
        cwd.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mnist_tracking.train", *args, "mlflow.experiment_name=load"]
                + [f"hydra.run.dir={cwd}/outputs", f"hydra.sweep.dir={cwd}/multirun"],
                cwd=cwd,
                env=user_env(stack, user),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    codes = [proc.wait() for proc in procs]
    wall = time.perf_counter() - started
    with log.open() as f:
        f.seek(skip)
        lines = [m for m in map(LINE.search, f) if m]
    seconds = sorted(float(m["seconds"]) for m in lines)
    quantiles = statistics.quantiles(seconds, n=100)
    return {
        "load: exit codes of the 4 commands": " ".join(map(str, codes)),
        "load: wall time": f"{wall:.1f} s",
        "load: requests": str(len(lines)),
        "load: requests per second (sustained)": f"{len(lines) / wall:.1f}",
        "load: latency p50 / p95 / p99 / max": " / ".join(
            f"{v * 1000:.0f} ms" for v in (quantiles[49], quantiles[94], quantiles[98], seconds[-1])
        ),
        "load: responses not 2xx, by status and request": ", ".join(
            f"{status} {request}: {n}"
            for (status, request), n in sorted(
                Counter(
                    (m["status"], m["request"].split(" HTTP/")[0].split("?")[0]) for m in lines if m["status"][0] != "2"
                ).items()
            )
        )
        or "none",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, default=FIXTURE)
    parser.add_argument("--limit-train", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="also write benchmarks/SERVER_RESULTS.md")
    args = parser.parse_args()
    rows = Rows()
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        measure(rows, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows.table()
    if args.markdown:
        header = "\n".join(
            f"- **{key}**: {value}"
            for key, value in provenance(["-m", "benchmarks.bench_server", *sys.argv[1:]]).items()
        )
        (ROOT / "benchmarks" / "SERVER_RESULTS.md").write_text(
            "Written by `python -m benchmarks.bench_server --markdown`: the latest invocation only. Read ratios "
            "rather than absolute times: a shared machine's other tenants move them.\n\n"
            f"<!-- provenance -->\n{header}\n<!-- /provenance -->\n\n{rows.markdown()}\n"
        )


def measure(rows: Rows, args: argparse.Namespace, work: Path) -> None:
    """The rows: the runs against each server, alternating, then the load."""
    times: dict[str, list[float]] = {"plain": [], "authenticated": [], "authenticated, no credential cache": []}
    with postgres() as db, mlflow_server(db, work / "artifacts") as plain, team_stack() as stack:
        grant_team(stack, "bench", ["alice", "bob"], ["bench", "load"], "mnist-best")
        plain_env = base_env() | {"MLFLOW_TRACKING_URI": plain}
        for i in range(args.repeats + 1):  # the first round warms the caches and is not counted
            for cache in ("60", "0"):
                key = "authenticated" if cache == "60" else "authenticated, no credential cache"
                stack.script("restart-mlflow", TEAM_SERVER_AUTH_CACHE_TTL=cache)
                (work / f"{cache}-{i}").mkdir()
                seconds = one_run(user_env(stack, "alice"), args.data_path, args.limit_train, work / f"{cache}-{i}")
                (work / f"plain-{cache}-{i}").mkdir()
                plain_s = one_run(plain_env, args.data_path, args.limit_train, work / f"plain-{cache}-{i}")
                if i:
                    times[key].append(seconds)
                    if cache == "60":
                        times["plain"].append(plain_s)
        stack.script("restart-mlflow")  # the default cache for the load
        base = statistics.median(times["plain"])
        for key, values in times.items():
            median = statistics.median(values)
            rows.append((f"one-epoch dense run, {key}", f"{median:.1f} s ({median / base:.2f}x plain)"))
        for key, value in load(stack, args.data_path, work).items():
            rows.append((key, value))


if __name__ == "__main__":
    main()
