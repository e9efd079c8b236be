"""Train one model on MNIST and record the run in MLflow.

    python -m mnist_tracking.train                              # the default job (conf/config.yaml)
    python -m mnist_tracking.train -m model=dense,mlp64         # a sweep: one run per model
    python -m mnist_tracking.train experiment=study             # the seed study (conf/experiment/study.yaml)
"""

from __future__ import annotations

import atexit
import gc
import logging
import math
import os
import sys
import threading

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_tracking.checks import check_config
from mnist_tracking.errors import ConfigError, DivergedError, RunFailedError
from mnist_tracking.names import ATTEMPT_FROM_EPOCH_TAG, ATTEMPTS_TAG, RESUMED_FROM_EPOCH_TAG

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Trains, evaluates and records one run of `cfg` (or continues a stopped one); returns its final metrics."""
    from mnist_tracking.backend import use_backend
    from mnist_tracking.job import current_job
    from mnist_tracking.redaction import install_log_filter

    install_log_filter()  # secrets in overrides or URIs never reach the console or the job's log file
    check_config(cfg)  # bad values fail here, before anything trains or is recorded
    job = current_job()
    use_backend(cfg.backend, job.threads)  # before Keras is first imported, which reads it once
    # Imported here, not at the top: `--help` and `--cfg job` answer without them, and Keras after its backend.
    import keras
    import mlflow

    from mnist_tracking import resume, store, tracking
    from mnist_tracking.callback import KeepInterrupts, MlflowCallback
    from mnist_tracking.data import load_mnist
    from mnist_tracking.evaluation import index_installed_packages, record_evaluation
    from mnist_tracking.fused import fuse_epochs
    from mnist_tracking.pipeline import training_batches
    from mnist_tracking.rendering import FigureLog, start_helper

    # A multirun trains many models in one process: Keras's clear_session() collects the last job's garbage. The
    # process's first job freezes what exists then (every module of Keras, JAX and MLflow): later collections skip
    # it, 0.02-0.15 s a job instead of 0.3-0.45 s. Once only: what a job leaves frozen is never collected.
    keras.backend.clear_session(free_memory=gc.get_freeze_count() > 0)
    if not gc.get_freeze_count():
        gc.freeze()
    keras.utils.set_random_seed(cfg.seed)
    tracking_uri = store.resolve_tracking_uri(cfg.mlflow.tracking_uri, job.launch_dir)
    experiment_id = store.prepare_experiment(tracking_uri, cfg.mlflow.experiment_name)
    if (done := tracking.find_finished_run(tracking_uri, experiment_id, cfg)) is not None:
        return tracking.reuse_run(tracking_uri, done, cfg.mlflow.parent_run_id, job.name)
    helper = job.threads is None  # one job at a time: a helper process renders its figures (parallel jobs: in place)
    if helper:
        start_helper()  # a forkserver imports Matplotlib while this process loads the data and trains
    data = load_mnist(cfg.data.path, cfg.data.normalization, cfg.data.validation_split, cfg.data.limit_train,
                      cfg.data.limit_test)
    stopped = resume.claim_run(tracking_uri, experiment_id, cfg)  # a stopped run of this job to continue, if any

    client = mlflow.MlflowClient(tracking_uri)
    # A continued run keeps its tags (its command, overrides, parent): only the owner changes.
    with tracking.tracked_run(tracking_uri, experiment_id, job.name, {} if stopped else tracking.run_tags(job, cfg),
                              run_id=stopped and stopped.info.run_id,
                              system_metrics_interval=cfg.mlflow.log_system_metrics and cfg.mlflow.system_metrics_interval
                              ) as run:
        # Built inside the run: a model or optimizer that Keras rejects leaves a FAILED run that says why.
        model = instantiate(cfg.model, _convert_="all")
        steps_per_epoch = math.ceil(len(data.x_train) / cfg.data.batch_size)
        model.compile(optimizer=instantiate(cfg.optimizer), loss="categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=steps_per_epoch if cfg.trainer.fast else 1)
        first_epoch, recorded = 0, {}
        if stopped:
            first_epoch = resume.restore(client, stopped, model, job.output_dir / "resumed") + 1
            recorded = resume.recorded_history(client, stopped.info.run_id)
            attempt = stopped.data.tags[ATTEMPTS_TAG]
            mlflow.set_tags({RESUMED_FROM_EPOCH_TAG: first_epoch, ATTEMPT_FROM_EPOCH_TAG.format(attempt): first_epoch})
            log.info("Resuming run %s from epoch %d", stopped.info.run_id, first_epoch)
        tracking.log_config(cfg, job.overrides, logged=stopped and stopped.data.params)
        splits = tracking.datasets(data)
        if not stopped:  # a continued run has them already; this job's stopped runs that could not be continued
            tracking.log_datasets(splits, tracking_uri)
            resume.supersede(tracking_uri, experiment_id, cfg, run.info.run_id)
        batches = training_batches(data.x_train, data.y_train, cfg.data.batch_size, cfg.seed, first_epoch,
                                   cfg.trainer.epochs)
        if cfg.trainer.fast and keras.backend.backend() == "jax":
            fuse_epochs(model, batches)  # TensorFlow runs steps_per_execution steps in one call by itself
        index_installed_packages()  # while the model trains: the end of the run needs it
        # The figures render in a helper process while the run goes on; all are stored before the run ends.
        with FigureLog(client, run.info.run_id, helper=helper) as log_figure:
            recorder = MlflowCallback(run.info.run_id, tracking_uri, cfg.trainer.checkpoint_every, job.output_dir,
                                      recorded, log_figure)
            try:  # stopped or not, what was trained is on record before the run ends
                with KeepInterrupts() as interrupts:
                    model.fit(
                        batches, steps_per_epoch=steps_per_epoch, initial_epoch=first_epoch,
                        epochs=cfg.trainer.epochs, shuffle=False, validation_data=(data.x_val, data.y_val),
                        validation_batch_size=cfg.trainer.eval_batch_size if cfg.trainer.fast else None,
                        callbacks=[keras.callbacks.TerminateOnNaN(), recorder, _epoch_logger(cfg.trainer.epochs),
                                   interrupts],
                        verbose=1 if sys.stdout.isatty() else 0,  # Keras's bar on a terminal; the log line always
                    )
            except BaseException:
                recorder.close(raise_errors=False)  # the fit's own exception (or Ctrl-C) is the one to report
                raise
            recorder.close()
            _raise_if_diverged(recorder.history)
            test_metrics = record_evaluation(model, data, cfg.trainer.eval_batch_size, cfg.data.normalization,
                                             epoch=len(recorder.history["loss"]) - 1, test_set=splits["testing"],
                                             log_figure=log_figure)

    metrics = {key: values[-1] for key, values in recorder.history.items()} | test_metrics
    log.info("MLflow run %s: test_accuracy=%.4f val_accuracy=%.4f", run.info.run_id, metrics["test_accuracy"],
             metrics["val_accuracy"])
    log.info("See it with: %s  (experiment %s, run %s)", store.ui_command(tracking_uri), experiment_id, run.info.run_id)
    return metrics


def _raise_if_diverged(history: dict[str, list[float]]) -> None:
    """DivergedError when the last epoch's loss is not finite (TerminateOnNaN stopped the fit there)."""
    losses = history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise DivergedError(f"loss became {losses[-1]} at epoch {len(losses)}")


def _epoch_logger(epochs: int):
    """A callback that logs one line per epoch with every metric (the job's log file has no progress bar)."""
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
        "epoch %d/%d: %s", epoch + 1, epochs, " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Runs `train` for one Hydra job and returns `optimized_metric` for sweepers."""
    try:
        metrics = train(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except RunFailedError as exc:
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        if isinstance(exc.__cause__, DivergedError):  # a reason, not a bug: no traceback
            log.error("%s", exc)
            if not multirun:
                sys.exit(1)
        elif not multirun:
            raise
        else:  # one failing job must not end the sweep: its run is FAILED and the sweep's report lists it
            log.exception("Job %s failed", HydraConfig.get().job.override_dirname)
        return math.nan
    # Any other failure has no run to show it: it ends a sweep, loudly.
    return metrics[cfg.optimized_metric]


def cli() -> None:
    """The command (`python -m mnist_tracking.train`, `mnist-train`): `--help` answered from the project's own
    help template and groups; everything else is Hydra's."""
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        from mnist_tracking.help import render_help

        print(render_help([arg for arg in args if not arg.startswith("-")]))
        return
    main()  # returns only when the command succeeded (Hydra turns a failure into SystemExit)
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """Ends the process as Python's exit would, less the interpreter's teardown: freeing the objects of Keras,
    JAX and MLflow one by one takes ~1.2 s here, memory the OS takes back at once. The exit handlers still run
    (logging's flush, MLflow's, Ray's and joblib's shutdown). A normal exit instead while a thread still runs (it
    waits for it), or under a profiler or debugger (`python -m cProfile` writes its report after the program)."""
    if (sys.getprofile() or sys.gettrace()
            or any(thread is not threading.main_thread() and not thread.daemon for thread in threading.enumerate())):
        return
    atexit._run_exitfuncs()  # what a normal exit runs, in the same order
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    cli()
