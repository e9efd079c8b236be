"""Training and tracking speed on the full MNIST, everything side by side in one invocation.

    python benchmarks/bench_train.py --data-path ../shared/data/mnist.npz      # ~10 min on 2 cores

Prints one table: seconds per epoch for `dense` and `mlp64` at batch 32 under plain `model.fit`
(`trainer.fast=false`) and under the default fast path, with the speed ratio and both final validation
accuracies after 30 epochs; per-epoch tracking overhead, and the checkpoint overhead on top of it
(`--only-epochs`: just these two rows); end-of-run logging seconds; serial vs joblib sweep throughput;
the whole study against plain fit with MLflow's own Keras callback and default model logging; `--help`
wall time; the peak RSS of one training job. Every job runs as the real CLI in a subprocess, one at a
time (two timed TensorFlow jobs side by side would measure each other).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "mnist_tracking.train"]

# MLflow's stock Keras tracking, as a user without this project would write it (autolog crashes with
# TensorFlow 2.21, which no longer ships TensorBoard).
BASELINE = """
import sys, time, keras, mlflow, numpy as np
data = np.load(sys.argv[1])
x = (data["x_train"].astype("float32") / 255.0 - 0.1307) / 0.3081
y = keras.utils.to_categorical(data["y_train"], 10)
mlflow.set_tracking_uri(sys.argv[2])
mlflow.set_experiment("baseline")
for hidden in ([], [keras.layers.Dense(64, activation="relu")]):
    keras.utils.set_random_seed(42)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), *hidden,
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    with mlflow.start_run():
        model.fit(x, y, batch_size=32, epochs=int(sys.argv[3]), validation_split=0.25, verbose=0,
                  callbacks=[mlflow.keras.MlflowCallback()])
        mlflow.keras.log_model(model, name="model")
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Runs a command to completion; returns its wall time in seconds."""
    start = time.perf_counter()
    # Each job uses the default store in its own folder: no tracking URI inherited from this process.
    clean = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run(cmd, cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def store_runs(workdir: Path, experiment: str = "mnist") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweep") != "true"]


def epoch_stats(workdir: Path, run: mlflow.entities.Run) -> tuple[float, float, float]:
    """Median seconds per epoch (from the metric timestamps), end-of-run logging seconds, final val accuracy."""
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    stamps = [m.timestamp / 1000 for m in sorted(client.get_metric_history(run.info.run_id, "val_accuracy"),
                                                 key=lambda m: m.step)]
    per_epoch = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
    return per_epoch, run.info.end_time / 1000 - stamps[-1], run.data.metrics["val_accuracy"]


def fast_epoch_seconds(data_path: str, epochs: int = 6, rounds: int = 6) -> tuple[dict[str, float], float, float]:
    """Median seconds per mlp64 fast-path epoch, fed as train() feeds it, for three ways of recording it
    (in-process): untracked, MlflowCallback, and MlflowCallback with a checkpoint every epoch. The variants
    take turns, `rounds` times, so that the machine's drift spreads over all three. Also the checkpoint's own
    work, timed directly: saving it (on the training thread) and storing it with the run (in the background)."""
    import keras

    from mnist_tracking.callback import MlflowCallback
    from mnist_tracking.checkpoint import save_checkpoint
    from mnist_tracking.data import load_mnist
    from mnist_tracking.models import mlp
    from mnist_tracking.pipeline import training_batches

    data = load_mnist(data_path, "standard", 0.25, None, None)
    steps = -(-len(data.x_train) // 32)
    variants = {"untracked": lambda tmp: [], "tracked": lambda tmp: [MlflowCallback()],
                "tracked + checkpoint every epoch": lambda tmp: [MlflowCallback(checkpoint_every=1, checkpoint_dir=tmp)]}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        names = list(variants)
        for round_ in range(rounds):
            for name in names[round_ % 3:] + names[:round_ % 3]:  # each variant first, second and third in turn
                callbacks = variants[name]
                keras.utils.set_random_seed(42)
                model = mlp(64, "relu")
                model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy",
                              metrics=["accuracy"], steps_per_execution=steps)
                epoch: list[float] = []
                timer = keras.callbacks.LambdaCallback(
                    on_epoch_begin=lambda e, logs: epoch.append(-time.perf_counter()),
                    on_epoch_end=lambda e, logs: epoch.__setitem__(-1, epoch[-1] + time.perf_counter()))
                # The timer comes last, so a tracked epoch includes MlflowCallback's work.
                with mlflow.start_run():
                    model.fit(training_batches(data.x_train, data.y_train, 32, 42, 0, epochs), steps_per_epoch=steps,
                              epochs=epochs, verbose=0, callbacks=[*callbacks(Path(tmp)), timer], shuffle=False,
                              validation_data=(data.x_val, data.y_val), validation_batch_size=1024)
                times[name] += epoch[1:]  # the first epoch also traces the compiled step
        save, store = [], []
        client = mlflow.MlflowClient()
        with mlflow.start_run() as run:
            for i in range(20):
                start = time.perf_counter()
                save_checkpoint(model, i, Path(tmp) / "c" / "checkpoint.npz")
                save.append(time.perf_counter() - start)
                client.log_artifact(run.info.run_id, str(Path(tmp) / "c" / "checkpoint.npz"), "checkpoint")
                client.set_tag(run.info.run_id, "checkpoint_epoch", str(i))
                store.append(time.perf_counter() - start - save[-1])
    return {name: statistics.median(t) for name, t in times.items()}, statistics.median(save), statistics.median(store)


def system_metrics_sample_seconds(samples: int = 20) -> float:
    """Median seconds of one sample of MLflow's system-metrics monitor, as its thread takes it: collect,
    check the run is still RUNNING, log (flushed at once) to a SQLite store."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = mlflow.MlflowClient(uri)
        run = client.create_run(client.create_experiment("system"))
        monitor = SystemMetricsMonitor(run.info.run_id, tracking_uri=uri)
        for _ in range(samples):
            start = time.perf_counter()
            monitor.collect_metrics()
            client.get_run(run.info.run_id)
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class Rows(list):
    """Measured rows: each printed as soon as it is measured, then all of them as one table."""

    def append(self, row: tuple[str, str]) -> None:
        super().append(row)
        print(f"{row[0]}: {row[1]}", flush=True)

    def table(self) -> None:
        width = max(len(key) for key, _ in self)
        print(f"\n| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
        for key, value in self:
            print(f"| {key.ljust(width)} | {value} |")


def epoch_rows(rows: Rows, data_path: str) -> None:
    """The per-epoch cost of tracking, and of checkpointing on top of it."""
    seconds, save, store = fast_epoch_seconds(data_path)
    untracked, tracked, checkpointed = seconds.values()
    rows.append(("mlp64 fast-path epoch untracked → tracked (overhead)",
                 f"{untracked:.3f} → {tracked:.3f} s ({(tracked - untracked) / untracked:+.1%})"))
    rows.append(("mlp64 fast-path epoch tracked → with a checkpoint every epoch (overhead)",
                 f"{tracked:.3f} → {checkpointed:.3f} s ({(checkpointed - tracked) / tracked:+.1%})"))
    rows.append(("checkpoint work per epoch: save (training thread) + store with the run (background)",
                 f"{save * 1000:.1f} + {store * 1000:.1f} ms ({(save + store) / tracked:.1%} of a tracked epoch)"))
    sample, interval = system_metrics_sample_seconds(), 2.0  # conf/mlflow/default.yaml's system_metrics_interval
    rows.append(("system metrics: one sample (background thread), share of training time at one per "
                 f"{interval:g} s", f"{sample * 1000:.1f} ms ({sample / interval:.2%})"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True, help="the full mnist.npz")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the per-model comparison (30: the study)")
    parser.add_argument("--sweep-epochs", type=int, default=5, help="epochs of each job of the 4-job sweeps")
    parser.add_argument("--only-epochs", action="store_true",
                        help="only the per-epoch tracking and checkpoint overhead rows (~1 min)")
    args = parser.parse_args()
    data = f"data.path={Path(args.data_path).resolve()}"
    rows = Rows()
    if args.only_epochs:
        epoch_rows(rows, args.data_path)
        return rows.table()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"mnist-tracking benchmark: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, working in {work}", flush=True)

    # Peak RSS first, while this process has no other finished child to report instead.
    (work / "rss").mkdir()
    run([*TRAIN, "model=mlp64", "trainer.epochs=3", data], work / "rss")
    rows.append(("peak RSS of one training job (mlp64, 3 epochs)",
                 f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"))

    help_times = [run([*TRAIN, "--help"], work) for _ in range(3)]
    rows.append(("`python -m mnist_tracking.train --help` wall time (median of 3)", f"{statistics.median(help_times):.2f} s"))

    (work / "compare").mkdir()
    run([*TRAIN, "-m", "model=dense,mlp64", "trainer.fast=false,true", f"trainer.epochs={args.epochs}", data],
        work / "compare")
    stats = {(r.data.params["model.hidden_units"], r.data.params["trainer.fast"]): epoch_stats(work / "compare", r)
             for r in store_runs(work / "compare")}
    for name, hidden in (("dense", "[]"), ("mlp64", "64")):
        (plain, _, plain_acc), (fast, end, fast_acc) = stats[(hidden, "False")], stats[(hidden, "True")]
        rows.append((f"{name}: s/epoch plain fit → fast path (ratio)", f"{plain:.2f} → {fast:.2f} ({plain / fast:.1f}×)"))
        rows.append((f"{name}: val_accuracy after {args.epochs} epochs, plain / fast", f"{plain_acc:.4f} / {fast_acc:.4f}"))
        rows.append((f"{name}: end-of-run logging (test, figures, config, model)", f"{end:.2f} s"))

    epoch_rows(rows, args.data_path)

    grid = ["-m", "model=dense,mlp64", "optimizer.learning_rate=0.01,0.1", f"trainer.epochs={args.sweep_epochs}", data]
    (work / "serial").mkdir()
    (work / "joblib").mkdir()
    serial = run([*TRAIN, *grid], work / "serial")
    parallel = run([*TRAIN, *grid, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], work / "joblib")
    lost = 4 - len(store_runs(work / "joblib"))
    rows.append((f"4-job sweep ({args.sweep_epochs} epochs each): serial → joblib, 2 workers (throughput ratio)",
                 f"{serial:.1f} → {parallel:.1f} s ({serial / parallel:.2f}×), runs lost: {lost}"))

    (work / "study").mkdir()
    ours = run([*TRAIN, "-m", "model=dense,mlp64", data], work / "study")
    (work / "baseline").mkdir()
    baseline = run([sys.executable, "-c", BASELINE, str(Path(args.data_path).resolve()),
                    f"sqlite:///{work / 'baseline' / 'mlflow.db'}", "30"], work / "baseline")
    rows.append(("whole study (dense + mlp64, 30 epochs, tracked): plain fit + mlflow.keras.MlflowCallback "
                 "+ default log_model → ours", f"{baseline:.0f} → {ours:.0f} s ({ours / baseline:.2f} of it)"))

    rows.table()


if __name__ == "__main__":
    main()
