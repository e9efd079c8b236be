"""Train one model on MNIST and record the run in MLflow.

    python -m mnist_tracking.train                              # the default job (conf/config.yaml)
    python -m mnist_tracking.train -m model=dense,mlp64         # the study: one run per model
"""

from __future__ import annotations

import logging
import math
import sys
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_tracking.checks import ConfigError, check_config

if TYPE_CHECKING:
    from mlflow.entities import Run

    from mnist_tracking.tracking import Job

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 1024  # for evaluation and prediction only; no effect on training


def train(cfg: DictConfig) -> dict[str, float]:
    """Trains, evaluates and records one run of `cfg`; returns its final metrics (last epoch, test)."""
    # Imported here, not at the top, so `--help` and `--cfg job` answer without loading TensorFlow.
    import keras
    import mlflow
    from mlflow.models import infer_signature

    from mnist_tracking import figures, tracking
    from mnist_tracking.callback import MlflowCallback
    from mnist_tracking.data import load_mnist
    from mnist_tracking.redaction import install_log_filter

    install_log_filter()  # secrets in overrides or URIs never reach the console or the job's log file
    check_config(cfg)  # bad values fail here, before anything trains or is recorded
    job = tracking.current_job()
    _set_threads(job)
    keras.backend.clear_session()  # a multirun trains many models in one process
    keras.utils.set_random_seed(cfg.seed)
    tracking_uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri, job.launch_dir)
    experiment_id = tracking.prepare_experiment(tracking_uri, cfg.mlflow.experiment_name)
    if cfg.sweep.skip_finished and (done := tracking.find_finished_run(experiment_id, cfg)) is not None:
        return _reuse(done, cfg.mlflow.parent_run_id, job)
    data = load_mnist(cfg.data.path, cfg.data.normalization, cfg.data.validation_split, cfg.data.limit_train,
                      cfg.data.limit_test)

    with tracking.tracked_run(experiment_id, job.name, tracking.run_tags(job, cfg)) as run:
        # Built inside the run: a model or optimizer that Keras rejects leaves a FAILED run that says why.
        model = instantiate(cfg.model, _convert_="all")
        steps_per_epoch = math.ceil(len(data.x_train) / cfg.data.batch_size)
        model.compile(optimizer=instantiate(cfg.optimizer), loss="categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=steps_per_epoch if cfg.trainer.fast else 1)
        tracking.log_config(cfg, job.overrides)
        epochs = cfg.trainer.epochs
        callbacks = [
            MlflowCallback(run.info.run_id),
            keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
                "epoch %d/%d: %s", epoch + 1, epochs, " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()))),
        ]
        history = model.fit(
            data.x_train, data.y_train, batch_size=cfg.data.batch_size, epochs=epochs,
            validation_data=(data.x_val, data.y_val), callbacks=callbacks,
            # Evaluation takes no optimizer step: big batches give the same accuracy and the loss up to rounding.
            validation_batch_size=EVAL_BATCH_SIZE if cfg.trainer.fast else None,
            verbose=1 if sys.stdout.isatty() else 0,  # Keras's bar on a terminal; the log line above always
        )

        mlflow.log_metric("optimizer_steps", int(model.optimizer.iterations))  # updates made: fast == plain
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
        mlflow.log_metrics({"test_loss": test_loss, "test_accuracy": test_accuracy})

        probabilities = model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
        labels, predicted = data.y_test.argmax(axis=1), probabilities.argmax(axis=1)
        mlflow.log_figure(figures.misclassified(data.x_test, labels, probabilities), "figures/misclassified.png")
        mlflow.log_figure(figures.confusion_matrix(labels, predicted), "figures/confusion_matrix.png")
        mlflow.keras.log_model(
            model, name="model", signature=infer_signature(data.x_test[:5], probabilities[:5]),
            pip_requirements=tracking.MODEL_REQUIREMENTS,
        )

    metrics = {key: values[-1] for key, values in history.history.items()}
    metrics |= {"test_loss": test_loss, "test_accuracy": test_accuracy}
    log.info("MLflow run %s: test_accuracy=%.4f val_accuracy=%.4f", run.info.run_id, test_accuracy, metrics["val_accuracy"])
    log.info("See it with: %s  (experiment %s, run %s)", tracking.ui_command(tracking_uri), experiment_id, run.info.run_id)
    return metrics


def _reuse(run: Run, parent_run_id: str | None, job: Job) -> dict[str, float]:
    """Skips a job that already has a FINISHED run: links that run to the sweep and returns its metrics."""
    import mlflow

    from mnist_tracking.report import REUSED_TAG_PREFIX

    log.info("Skipping %s: run %s already FINISHED with the same config", job.name, run.info.run_id)
    if parent_run_id:
        mlflow.MlflowClient().set_tag(parent_run_id, REUSED_TAG_PREFIX + run.info.run_id, job.name)
    return dict(run.data.metrics)


def _set_threads(job: Job) -> None:
    """Shares the cores between parallel jobs on one machine (TensorFlow would give each all of them)."""
    threads = job.threads
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # a reused worker process whose TensorFlow is already initialized keeps its setting
        return
    log.info("Parallel jobs: %d TensorFlow threads for this one", threads)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Runs `train` for one Hydra job and returns `optimized_metric` for sweepers."""
    try:
        metrics = train(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except Exception as exc:
        from mnist_tracking.tracking import RUN_FAILED_NOTE

        recorded = any(note.startswith(RUN_FAILED_NOTE) for note in getattr(exc, "__notes__", []))
        if HydraConfig.get().mode != RunMode.MULTIRUN or not recorded:
            raise  # a failure with no run to show it ends the sweep, loudly
        # One failing job must not end the sweep: its run is FAILED and the sweep's report lists it.
        log.exception("Job %s failed", HydraConfig.get().job.override_dirname)
        return math.nan
    return metrics[cfg.optimized_metric]


if __name__ == "__main__":
    main()
