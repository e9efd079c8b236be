"""What each speed-up of mnist_tracking/runtime/speedups.py saves: the real CLI with every speed-up on against all but
that one, as alternating pairs in one invocation, so that the machine's drift falls on both sides alike.

    python benchmarks/bench_speedups.py --data-path tests/data/mnist_small.npz --pairs 5 [--markdown]

Each command is a one-epoch run in a new folder (a new store: `store_template` counts every time), JAX's
compilation cache already warm (a first untimed sweep fills it), one job at a time. A speed-up "pays" when a
one-sided sign test over the pairs says it is faster with it (p < 0.05: 5 of 5 pairs, 7 of 8, 9 of 10), so that one
outlier of a shared machine decides nothing once there are enough pairs. `--markdown` writes the table to
benchmarks/SPEEDUPS.md with its provenance (commit, versions, machine, command).
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

SWITCH = "MNIST_TRACKING_SPEEDUPS"
NAMES = ("hide_sklearn", "store_template", "compilation_cache")


def timed(python: str, args: list[str], switch: str) -> float:
    """Seconds of `python -m mnist_tracking.train ARGS` from start to exit, in a new folder."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, SWITCH: switch}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        done = subprocess.run(
            [
                python,
                "-m",
                "mnist_tracking.train",
                *args,
                f"hydra.run.dir={folder}/out",
                f"hydra.sweep.dir={folder}/multirun",
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{args} with {SWITCH}={switch} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


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
    one = [f"data.path={args.data_path}", "trainer.epochs=1", "mlflow.log_system_metrics=false"]
    sweep = ["-m", "model=dense,mlp64,mlp", *one]
    timed(args.python, sweep, "all")  # JAX's compilation cache and the empty store's template, filled once
    rows = []
    for name in args.only.split(",") if args.only else NAMES:
        command = one
        on, off = [], []
        for pair in range(args.pairs):
            first, second = ("all", f"all,-{name}") if pair % 2 == 0 else (f"all,-{name}", "all")
            times = {first: timed(args.python, command, first), second: timed(args.python, command, second)}
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
            f"{args.pairs} alternating pairs per speed-up, each the real CLI from start to exit.",
            "",
            *(f"- **{key}**: {value}" for key, value in head.items()),
            "",
            *table,
            "",
        ]
        (ROOT / "benchmarks" / "SPEEDUPS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
