"""What each speed-up of mnist_tracking/runtime/speedups.py saves, with it on against all but it, as alternating
pairs in one invocation, so that the machine's drift falls on both sides alike.

    python benchmarks/bench_speedups.py --python $PWD/.venv-base/bin/python --pairs 10 [--markdown]

Each is measured on what it speeds up, so that the rest of a run's time and its noise do not hide it:
`hide_sklearn` on a new process that imports Keras (start to exit), `store_template` on making a new store and
experiment (timed inside the process), `compilation_cache` on a one-epoch run of the real command (start to exit),
each in a new folder, the caches filled by an untimed first round. A speed-up "pays" when a one-sided sign test
over the pairs says it is faster with it (p < 0.05: 5 of 5 pairs, 7 of 8, 9 of 10). `--markdown` writes the table
to benchmarks/SPEEDUPS.md with its provenance (commit, versions, machine, command).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench_train import ROOT, provenance

from mnist_tracking.runtime.speedups import SPEEDUPS, SWITCH

# What each speed-up speeds up, measured as directly as it can be, so that the rest of a run's time (and its noise)
# does not hide it: (how it is run, whether the time is what the command prints or its wall time).
IMPORT_KERAS = "from mnist_tracking.runtime import speedups; speedups.import_keras()"
NEW_STORE = (
    "import time; from mnist_tracking.tracking.store import prepare_experiment; start = time.perf_counter(); "
    "prepare_experiment('sqlite:///mlruns/mlflow.db', 'mnist'); print(time.perf_counter() - start)"
)


def commands(data_path: str) -> dict[str, tuple[list[str], bool]]:
    one_run = [
        "-m",
        "mnist_tracking.train",
        f"data.path={data_path}",
        "trainer.epochs=1",
        "mlflow.log_system_metrics=false",
    ]
    return {
        "hide_sklearn": (["-c", IMPORT_KERAS], False),  # a process that imports Keras, start to exit
        "store_template": (["-c", NEW_STORE], True),  # a new store and experiment, as a command makes them
        "compilation_cache": (one_run, False),  # a one-epoch run, start to exit
    }


def timed(python: str, argv: list[str], printed: bool, switch: str) -> float:
    """Seconds of `python ARGV` in a new folder: from start to exit, or what it prints (`printed`)."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, SWITCH: switch}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        done = subprocess.run(
            [python, *argv, *(["hydra.run.dir=out"] if "mnist_tracking.train" in argv else [])],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{argv} with {SWITCH}={switch} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1]) if printed else seconds


def verdict(p_value: float) -> str:
    return "pays" if p_value < 0.05 else "within the noise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", default=str(ROOT / "tests" / "data" / "mnist_small.npz"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the venv to measure (default: this one)")
    parser.add_argument("--only", help="comma-separated speed-ups (default: all)")
    parser.add_argument("--markdown", action="store_true", help="write benchmarks/SPEEDUPS.md")
    args = parser.parse_args()
    measured = commands(args.data_path)
    assert measured.keys() == SPEEDUPS.keys(), "every speed-up has its measurement, and only those"
    for argv, printed in measured.values():  # JAX's compilation cache and the empty store's copy, filled once
        timed(args.python, argv, printed, "all")
    rows = []
    for name in args.only.split(",") if args.only else measured:
        argv, printed = measured[name]
        on, off = [], []
        for pair in range(args.pairs):
            first, second = ("all", f"all,-{name}") if pair % 2 == 0 else (f"all,-{name}", "all")
            times = {first: timed(args.python, argv, printed, first), second: timed(args.python, argv, printed, second)}
            on.append(times["all"])
            off.append(times[f"all,-{name}"])
        saved = [b - a for a, b in zip(on, off)]
        faster = sum(s > 0 for s in saved)
        p_value = sum(math.comb(len(saved), k) for k in range(faster, len(saved) + 1)) / 2 ** len(saved)
        row = (
            name,
            statistics.median(on),
            statistics.median(off),
            statistics.median(saved),
            min(saved),
            max(saved),
            faster,
            len(saved),
            p_value,
        )
        rows.append(row)
        print(
            f"{name:18} on {row[1]:6.2f} s  off {row[2]:6.2f} s  saved median {row[3]:+.2f} s (pairs {row[4]:+.2f} "
            f"to {row[5]:+.2f}, faster in {faster} of {len(saved)}, p={p_value:.3f})  {verdict(p_value)}",
            flush=True,
        )
    table = [
        "| speed-up | median with (s) | median without (s) | saved, median of pairs (s) | saved, range of pairs (s) | "
        "pairs faster with it | sign test p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, with_, without, median, low, high, faster, n, p_value in rows:
        table.append(
            f"| `{name}` | {with_:.2f} | {without:.2f} | {median:+.2f} | {low:+.2f} to {high:+.2f} | "
            f"{faster} of {n} | {p_value:.3f} | {verdict(p_value)} |"
        )
    print("\n".join(table))
    if args.markdown:
        head = provenance(sys.argv)
        lines = [
            "# Speed-ups, measured",
            "",
            "Written by `benchmarks/bench_speedups.py --markdown`: "
            f"{args.pairs} alternating pairs per speed-up, each on what it speeds up (the script's docstring says how).",
            "",
            *(f"- **{key}**: {value}" for key, value in head.items()),
            "",
            *table,
            "",
        ]
        (ROOT / "benchmarks" / "SPEEDUPS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
