"""Training and tracking speed on the full MNIST, both Keras backends side by side in one invocation.

    python benchmarks/bench_train.py --data-path ../shared/data/mnist.npz           # ~15 min on 2 cores
    python benchmarks/bench_train.py --data-path ../shared/data/mnist.npz --scale   # + the 200-job sweep

Prints one table: `--help` wall time; a fused-scan floor (a whole epoch of batch-32 SGD steps in one
compiled JAX loop, no validation, no Keras); per backend (`--backends`, default jax,tensorflow), the study
as the real CLI: seconds per epoch with validation for `dense` and `mlp64` and their ratio to the floor,
accuracies, end-of-run recording, the study's wall time, a one-epoch `dense` run from process start to
exit and its peak RSS (on JAX also with no empty store cached yet); on the default backend, the fixed cost
per job of a serial sweep, serial vs joblib throughput on four study-size jobs, and vs the same jobs as two
serial sweeps started at once (what two workers could give at best), the study against plain fit with
MLflow's own Keras callback and default model logging (TensorFlow), per-epoch tracking and checkpoint
overhead, and that of images every epoch (`--only-epochs`: just these), and one system-metrics sample. Every job runs as the real CLI in a
subprocess, one at a time (two timed jobs side by side would measure each other), but for that row's two.

`--markdown` also writes the invocation's tables, each headed by where it was measured (the commit, the versions,
the CPU, the date and the command): the per-epoch rows to benchmarks/EPOCH_RESULTS.md and epoch_results.json, the
others to benchmarks/RESULTS.md and results.json. `--only-epochs --markdown` rewrites only the first two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

import mlflow

ROOT = Path(__file__).resolve().parents[1]
# The command per backend. A JAX job can run in an install without TensorFlow (`pip install -e .`, what `make study`
# makes), where Keras never imports it: --jax-python names that install's Python.
PYTHON = {"jax": sys.executable, "tensorflow": sys.executable}


def train_cmd(backend: str = "jax") -> list[str]:
    """`python -m mnist_tracking.train` with the Python that runs `backend` (jax: the default backend)."""
    return [PYTHON[backend], "-m", "mnist_tracking.train"]


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


# The floor: a whole epoch of the same batch-32 SGD steps as one compiled JAX loop (lax.scan), no validation, no Keras.
FLOOR = """
import sys, time, jax, jax.numpy as jnp, numpy as np
data = np.load(sys.argv[1])
x = ((data["x_train"][:45000].reshape(-1, 784).astype("float32") / 255.0 - 0.1307) / 0.3081)
y = np.eye(10, dtype="float32")[data["y_train"][:45000]]
steps = len(x) // 32
xb, yb = jnp.asarray(x[:steps * 32].reshape(steps, 32, 784)), jnp.asarray(y[:steps * 32].reshape(steps, 32, 10))

def init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b)) for k, a, b in zip(keys, sizes, sizes[1:])]

def loss(params, xs, ys):
    h = xs
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = params[-1]
    return -jnp.mean(jnp.sum(ys * jax.nn.log_softmax(h @ w + b), axis=-1))

@jax.jit
def epoch(params):
    def step(p, batch):
        grads = jax.grad(loss)(p, *batch)
        return jax.tree_util.tree_map(lambda a, g: a - 0.01 * g, p, grads), None
    return jax.lax.scan(step, params, (xb, yb))[0]

for name, sizes in (("dense", [784, 10]), ("mlp64", [784, 64, 10])):
    params = jax.block_until_ready(epoch(init(jax.random.PRNGKey(0), sizes)))  # compiles
    times = []
    for _ in range(5):
        start = time.perf_counter()
        params = jax.block_until_ready(epoch(params))
        times.append(time.perf_counter() - start)
    print(name, sorted(times)[2])
"""


def floor_seconds(data_path: str) -> dict[str, float]:
    """Seconds per epoch of the fused-scan floor (median of 5, after compiling), per model, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", FLOOR, data_path], capture_output=True, text=True, check=True)
    return {name: float(value) for name, value in (line.split() for line in out.stdout.splitlines())}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Runs a command to completion; returns its wall time in seconds."""
    return run_measured(cmd, cwd, env)[0]


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Runs a command to completion; returns its wall time in seconds and its own peak RSS in MB."""
    start = time.perf_counter()
    proc = start_job(cmd, cwd, env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    check_job(cmd, cwd, os.waitstatus_to_exitcode(status))
    return wall, usage.ru_maxrss / 1024


def run_together(cmds: list[list[str]], cwds: list[Path]) -> float:
    """Runs commands side by side, each in its own folder; returns the wall time until the last one ends."""
    start = time.perf_counter()
    procs = [start_job(cmd, cwd) for cmd, cwd in zip(cmds, cwds)]
    codes = [proc.wait() for proc in procs]
    wall = time.perf_counter() - start
    for cmd, cwd, code in zip(cmds, cwds, codes):
        check_job(cmd, cwd, code)
    return wall


def start_job(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts a command in `cwd`, its output to `cwd`/command.log, with this process's environment less what would
    point it elsewhere: each job uses the default store in its own folder (no tracking URI inherited) and the
    backend its command asks for."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KERAS_BACKEND")}
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "command.log", "w") as log:
        return subprocess.Popen(cmd, cwd=cwd, env={**clean, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)


def check_job(cmd: list[str], cwd: Path, code: int) -> None:
    """Ends the benchmark with the command's log when it failed."""
    if code != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{(cwd / 'command.log').read_text()[-3000:]}")


def store_runs(workdir: Path, experiment: str = "mnist") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweep") != "true"]


def epoch_stats(workdir: Path, run: mlflow.entities.Run) -> tuple[float, float, float]:
    """Median seconds per epoch (from the metric timestamps), end-of-run logging seconds, final val accuracy."""
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    stamps = [
        m.timestamp / 1000
        for m in sorted(client.get_metric_history(run.info.run_id, "val_accuracy"), key=lambda m: m.step)
    ]
    per_epoch = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
    return per_epoch, run.info.end_time / 1000 - stamps[-1], run.data.metrics["val_accuracy"]


def fast_epoch_seconds(
    data_path: str, epochs: int = 6, rounds: int = 6
) -> tuple[dict[str, float], dict[str, float], float, float]:
    """Median seconds per mlp64 fast-path epoch, fed as train() feeds it, for four ways of recording it
    (in-process, on the config's default backend): untracked, MlflowCallback, MlflowCallback with a checkpoint
    every epoch, and MlflowCallback with the images of every epoch (mlflow.log_images_every=1). The variants take
    turns, `rounds` times, so that the machine's drift spreads over all of them. Also
    the checkpoint's own work, timed directly: saving it (on the training thread) and storing it with the run (in
    the background). Second, the median seconds of each variant's whole fit after its first epoch, which includes
    waiting, at its end, for what its background threads still had to record."""
    from omegaconf import OmegaConf

    # Set before this process first imports Keras, which reads it once.
    os.environ.setdefault("KERAS_BACKEND", str(OmegaConf.load(ROOT / "conf" / "config.yaml").backend))
    import keras

    from mnist_tracking.ml.checkpoint import save_checkpoint
    from mnist_tracking.ml.fit import compile_model, fit
    from mnist_tracking.ml.mnist import load_mnist
    from mnist_tracking.ml.models import mlp
    from mnist_tracking.tracking.callback import MlflowCallback
    from mnist_tracking.tracking.epoch_images import EpochImages

    data = load_mnist(data_path, "standard", 0.25, None, None)
    variants = {
        "untracked": lambda tmp: [],
        "tracked": lambda tmp: [MlflowCallback()],
        "tracked + checkpoint every epoch": lambda tmp: [MlflowCallback(checkpoint_every=1, checkpoint_dir=tmp)],
        "tracked + images every epoch": lambda tmp: [MlflowCallback(images=EpochImages(data.x_val, data.y_val))],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    fits: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        names = list(variants)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # each variant first, ... in turn
                callbacks = variants[name]
                keras.utils.set_random_seed(42)
                model = mlp(64, "relu", data.input_shape, data.num_classes)
                # As train() does: with the confusion counts that images per epoch take from validation.
                compile_model(model, keras.optimizers.SGD(0.01), data, fast=True, confusion="images" in name)
                epoch: list[float] = []
                epoch_ends: list[float] = []
                timer = keras.callbacks.LambdaCallback(
                    on_epoch_begin=lambda e, logs, epoch=epoch: epoch.append(-time.perf_counter()),
                    on_epoch_end=lambda e, logs, epoch=epoch, ends=epoch_ends: (
                        epoch.__setitem__(-1, epoch[-1] + time.perf_counter()),
                        ends.append(time.perf_counter()),
                    ),
                )
                # The timer comes last, so a tracked epoch includes MlflowCallback's work.
                with mlflow.start_run():
                    trainer = SimpleNamespace(epochs=epochs, fast=True, eval_batch_size=1024)
                    fit(model, data, trainer, seed=42, callbacks=[*callbacks(Path(tmp)), timer])
                    after_first = time.perf_counter() - epoch_ends[0]  # the fit's end waits for its threads
                times[name] += epoch[1:]  # the first epoch also traces the compiled step
                fits[name].append(after_first)
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
    median = {name: statistics.median(t) for name, t in times.items()}
    whole = {name: statistics.median(t) for name, t in fits.items()}
    return median, whole, statistics.median(save), statistics.median(store)


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

    def markdown(self) -> str:
        width = max(len(key) for key, _ in self)
        lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
        return "\n".join(lines + [f"| {key.ljust(width)} | {value} |" for key, value in self])

    def table(self) -> None:
        print("\n" + self.markdown())


def provenance(argv: list[str]) -> dict[str, str]:
    """Where and how the figures were measured: the commit, the versions, the machine, the date, the command."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    def installed(name: str, python: str = sys.executable) -> str:
        if python != sys.executable:
            done = subprocess.run(
                [python, "-c", f"from importlib.metadata import version; print(version({name!r}))"],
                capture_output=True,
                text=True,
            )
            return done.stdout.strip() if done.returncode == 0 else "not installed"
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    # What the figures depend on: uncommitted changes there are named (a change to the docs is not).
    code = ["mnist_tracking", "conf", "hydra_plugins", "pyproject.toml", "benchmarks/bench_train.py"]
    commit = git("rev-parse", "--short", "HEAD") + (
        " (with uncommitted code changes)" if git("status", "--porcelain", "--", *code) else ""
    )
    return {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *argv]),
        "machine": f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **{name: installed(name) for name in ("keras", "mlflow", "tensorflow", "numpy")},
        "jax (JAX jobs)": installed("jax", PYTHON["jax"]),
        "tensorflow in the JAX jobs' install": installed("tensorflow", PYTHON["jax"]),
    }


# Where --markdown writes: the whole invocation's rows, and the per-epoch rows (which --only-epochs measures alone).
RESULTS = {"whole": "RESULTS", "epochs": "EPOCH_RESULTS"}


def write_results(rows: Rows, argv: list[str], name: str, where: dict[str, str] | None = None) -> None:
    """benchmarks/<name>.md (the table under its provenance) and benchmarks/<name, lower case>.json (the same, raw)."""
    where = where or provenance(argv)
    header = "\n".join(f"- **{key}**: {value}" for key, value in where.items())
    what = "the per-epoch rows" if name == RESULTS["epochs"] else "every row but the per-epoch ones"
    (ROOT / "benchmarks" / f"{name}.md").write_text(
        f"# Benchmark results: {what}\n\nWritten by `benchmarks/bench_train.py --markdown`: the latest invocation "
        "only (earlier ones are in git's history of this file). Read ratios rather than absolute times: a shared "
        "machine's other tenants move them.\n\n" + header + "\n\n" + rows.markdown() + "\n",
        encoding="utf-8",
    )
    (ROOT / "benchmarks" / f"{name.lower()}.json").write_text(
        json.dumps({"provenance": where, "rows": [{"measure": key, "value": value} for key, value in rows]}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    print(f"Wrote benchmarks/{name}.md and benchmarks/{name.lower()}.json", flush=True)


def epoch_rows(rows: Rows, data_path: str) -> None:
    """The per-epoch cost of tracking, and of checkpointing on top of it."""
    seconds, whole, save, store = fast_epoch_seconds(data_path)
    untracked, tracked, checkpointed, imaged = seconds.values()
    rows.append(
        (
            "mlp64 fast-path epoch untracked → tracked (overhead)",
            f"{untracked:.3f} → {tracked:.3f} s ({(tracked - untracked) / untracked:+.1%})",
        )
    )
    rows.append(
        (
            "mlp64 fast-path epoch tracked → with a checkpoint every epoch (overhead)",
            f"{tracked:.3f} → {checkpointed:.3f} s ({(checkpointed - tracked) / tracked:+.1%})",
        )
    )
    rows.append(
        (
            "mlp64 fast-path epoch tracked → with images every epoch (overhead)",
            f"{tracked:.3f} → {imaged:.3f} s ({(imaged - tracked) / tracked:+.1%})",
        )
    )
    base, drawn = whole["tracked"], whole["tracked + images every epoch"]
    rows.append(
        (
            "mlp64 fast-path fit after its first epoch, to the end of what it records: tracked → with images",
            f"{base:.3f} → {drawn:.3f} s ({(drawn - base) / base:+.1%})",
        )
    )
    rows.append(
        (
            "checkpoint work per epoch: save (training thread) + store with the run (background)",
            f"{save * 1000:.1f} + {store * 1000:.1f} ms ({(save + store) / tracked:.1%} of a tracked epoch)",
        )
    )
    sample, interval = system_metrics_sample_seconds(), 2.0  # conf/mlflow/default.yaml's system_metrics_interval
    rows.append(
        (
            f"system metrics: one sample (background thread), share of training time at one per {interval:g} s",
            f"{sample * 1000:.1f} ms ({sample / interval:.2%})",
        )
    )


def backend_rows(rows: Rows, backend: str, data: str, work: Path, floor: dict[str, float]) -> None:
    """One backend's rows: the study (per-epoch speed against the floor, accuracies, end-of-run, wall), a one-epoch
    run as a fresh process, and one training job's peak RSS."""
    study_dir = work / f"study-{backend}"
    wall, _ = run_measured([*train_cmd(backend), "experiment=study", f"backend={backend}", data], study_dir)
    stats = {
        r.data.params["model.hidden_units"]: (epoch_stats(study_dir, r), r.data.metrics["test_accuracy"])
        for r in store_runs(study_dir)
    }
    for name, hidden in (("dense", "[]"), ("mlp64", "64")):
        (per_epoch, end, val), test = stats[hidden]
        rows.append(
            (
                f"{backend}: {name} s/epoch, validation included (× fused-scan floor {floor[name]:.3f} s)",
                f"{per_epoch:.3f} ({per_epoch / floor[name]:.2f}×)",
            )
        )
        rows.append((f"{backend}: {name} val / test accuracy after 30 epochs", f"{val:.4f} / {test:.4f}"))
        rows.append((f"{backend}: {name} end-of-run recording (test, figures, model)", f"{end:.2f} s"))
    rows.append((f"{backend}: whole study (experiment=study, both runs tracked)", f"{wall:.1f} s"))
    wall, rss = run_measured(
        [*train_cmd(backend), "model=dense", "trainer.epochs=1", f"backend={backend}", data], work / f"one-{backend}"
    )
    tf = (
        subprocess.run(
            [PYTHON[backend], "-c", "import importlib.util; print(bool(importlib.util.find_spec('tensorflow')))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == "True"
    )
    where = "" if backend == "tensorflow" else f" (TensorFlow {'installed' if tf else 'not installed'})"
    rows.append((f"{backend}: one-epoch model=dense run, fresh process start to exit{where}", f"{wall:.1f} s"))
    rows.append((f"{backend}: peak RSS of that training job", f"{rss:.0f} MB"))


def first_store_row(rows: Rows, data: str, work: Path) -> None:
    """The one-epoch run on JAX again, where no empty store is cached yet (a user cache of its own, as on a new
    machine or MLflow version): MLflow builds the store's tables itself. Matplotlib's and JAX's caches stay."""
    import matplotlib

    from mnist_tracking.runtime import cache

    env = {
        "XDG_CACHE_HOME": str(work / "first-store-cache"),
        "MPLCONFIGDIR": matplotlib.get_cachedir(),
        "JAX_COMPILATION_CACHE_DIR": str(cache.jax_compilation_cache()),
    }
    wall = run([*train_cmd(), "model=dense", "trainer.epochs=1", data], work / "one-first-store", env)
    rows.append(("jax: the same one-epoch run, no empty store cached yet (MLflow's migrations run)", f"{wall:.1f} s"))


def fixed_cost_row(rows: Rows, data: str, work: Path, jobs: int = 5) -> None:
    """Fixed cost per job of a serial sweep of one-epoch dense jobs: (sweep wall − first job) / (jobs − 1) − epoch."""
    folder = work / "fixed"
    start = time.time()
    wall = run(
        [*train_cmd(), "-m", f"seed={','.join(map(str, range(jobs)))}", "model=dense", "trainer.epochs=1", data], folder
    )
    runs = sorted(store_runs(folder), key=lambda r: r.info.start_time)
    first = runs[0].info.end_time / 1000 - start  # process start to the first job's end
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    epoch = statistics.median(  # a one-epoch run's training: its start to its epoch metric
        client.get_metric_history(r.info.run_id, "val_accuracy")[0].timestamp / 1000 - r.info.start_time / 1000
        for r in runs[1:]
    )
    per_job = (wall - first) / (jobs - 1)
    rows.append(
        (
            f"serial sweep of {jobs} one-epoch dense jobs: per job after the first, less its epoch",
            f"{per_job:.2f} − {epoch:.2f} = {per_job - epoch:.2f} s",
        )
    )


def scale_row(rows: Rows, data: str, work: Path, jobs: int = 200) -> None:
    """A serial sweep of `jobs` tiny jobs: every run recorded, and how long its report takes to build and to rebuild."""
    folder = work / "scale"
    wall, rss = run_measured(
        [
            *train_cmd(),
            "-m",
            f"seed=range(0,{jobs})",
            "data.limit_train=1000",
            "trainer.epochs=1",
            "model=dense",
            "sweep.register_best=false",
            data,
        ],
        folder,
    )
    children = store_runs(folder)
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    [parent] = {r.data.tags["mlflow.parentRunId"] for r in children}
    # The parent's report is built after the last job ends and before the parent does.
    built = (client.get_run(parent).info.end_time - max(r.info.end_time for r in children)) / 1000
    report = run([PYTHON["jax"], "-m", "mnist_tracking.report", "--out", str(folder / "report")], folder)
    rows.append(
        (
            f"{jobs}-job serial sweep (limit_train=1000, 1 epoch): wall, runs recorded, the parent's report "
            "(last job's end → parent's end), report rebuilt by `python -m mnist_tracking.report`, the sweep "
            "process's peak RSS",
            f"{wall:.0f} s, {len(children)} runs, {built:.1f} s, {report:.1f} s, {rss:.0f} MB",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True, help="the full mnist.npz")
    parser.add_argument("--backends", default="jax,tensorflow", help="Keras backends side by side (default: both)")
    parser.add_argument(
        "--only-epochs", action="store_true", help="only the per-epoch tracking and checkpoint overhead rows (~1 min)"
    )
    parser.add_argument("--scale", action="store_true", help="also the 200-job sweep row (~15 min more)")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also write the tables, with their provenance, to benchmarks/RESULTS.md and EPOCH_RESULTS.md (.json too)",
    )
    parser.add_argument(
        "--jax-python",
        default=sys.executable,
        help="the Python for the JAX jobs, e.g. an install without TensorFlow (default: this one)",
    )
    args = parser.parse_args()
    PYTHON["jax"] = args.jax_python
    data = f"data.path={Path(args.data_path).resolve()}"
    rows, epochs = Rows(), Rows()
    if args.only_epochs:
        epoch_rows(epochs, args.data_path)
        return finish({RESULTS["epochs"]: epochs}, args.markdown)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    print(
        f"mnist-tracking benchmark: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, working in {work}",
        flush=True,
    )

    help_times = [run([*train_cmd(), "--help"], work / "help") for _ in range(3)]
    rows.append(
        ("`python -m mnist_tracking.train --help` wall time (median of 3)", f"{statistics.median(help_times):.2f} s")
    )
    floor = floor_seconds(str(Path(args.data_path).resolve()))
    for backend in args.backends.split(","):
        backend_rows(rows, backend, data, work, floor)
    if "jax" in args.backends.split(","):
        first_store_row(rows, data, work)

    fixed_cost_row(rows, data, work)
    grid = ["-m", "model=dense,mlp64", "seed=1,2", data]  # four study-size jobs (30 epochs each)
    serial = run([*train_cmd(), *grid], work / "serial")
    parallel = run([*train_cmd(), *grid, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], work / "joblib")
    lost = 4 - len(store_runs(work / "joblib"))
    rows.append(
        (
            "4 study-size jobs (30 epochs): serial → joblib, 2 workers (throughput ratio)",
            f"{serial:.1f} → {parallel:.1f} s ({serial / parallel:.2f}×), runs lost: {lost}",
        )
    )
    # What two workers could give on this machine at best: no launcher, each half of the grid as a serial sweep in a
    # process of its own (each with every core, as a lone job has), both started at once.
    halves = [work / "together-1", work / "together-2"]
    together = run_together(
        [[*train_cmd(), "-m", "model=dense,mlp64", f"seed={seed}", data] for seed in (1, 2)], halves
    )
    lost = 4 - sum(len(store_runs(half)) for half in halves)
    rows.append(
        (
            "the same 4 jobs as two serial sweeps of 2 started at once, no launcher (the most 2 workers "
            "could give here)",
            f"{serial:.1f} → {together:.1f} s ({serial / together:.2f}×), runs lost: {lost}",
        )
    )

    ours = run([*train_cmd(), "experiment=study", data], work / "study")
    baseline = run(
        [
            sys.executable,
            "-c",
            BASELINE,
            str(Path(args.data_path).resolve()),
            f"sqlite:///{work / 'baseline' / 'mlflow.db'}",
            "30",
        ],
        work / "baseline",
        env={"KERAS_BACKEND": "tensorflow"},
    )
    rows.append(
        (
            "whole study on the default backend against plain fit + mlflow.keras.MlflowCallback + default "
            "log_model (TensorFlow)",
            f"{baseline:.0f} → {ours:.0f} s ({ours / baseline:.2f} of it)",
        )
    )
    if args.scale:
        scale_row(rows, data, work)
    epoch_rows(epochs, args.data_path)
    finish({RESULTS["whole"]: rows, RESULTS["epochs"]: epochs}, args.markdown)


def finish(tables: dict[str, Rows], markdown: bool) -> None:
    """Prints the tables; with `markdown`, writes each to its file (RESULTS) too."""
    for name, rows in tables.items():
        rows.table()
        if markdown:
            write_results(rows, sys.argv, name)


if __name__ == "__main__":
    main()
