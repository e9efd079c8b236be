"""Train one model (on MNIST by default) and record the run in MLflow.

python -m mnist_tracking.train                              # the default job (conf/config.yaml)
python -m mnist_tracking.train -m model=dense,mlp64         # a sweep: one run per model
python -m mnist_tracking.train experiment=study             # the seed study (conf/experiment/study.yaml)
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
from omegaconf import DictConfig, OmegaConf

from mnist_tracking.errors import ConfigError, DivergedError, RunFailedError, refused

if TYPE_CHECKING:
    from mnist_tracking.runtime.job import Job

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Trains, evaluates and records one run of `cfg` (or continues a stopped one); returns the metrics of the model
    it logged: its epoch's (the last, or the best one that early stopping restored) and the test set's."""
    job = start_job(cfg)  # bad values fail here, before anything trains or is recorded; then the backend and seed
    import mlflow  # imported here, not at the top: `--help` and `--cfg job` answer without them, Keras after its backend

    from mnist_tracking.ml import callbacks as fit_callbacks
    from mnist_tracking.ml import fit as training
    from mnist_tracking.ml.data import load_dataset
    from mnist_tracking.tracking import continuation, ending, evaluation, recording, resume, store
    from mnist_tracking.tracking import run as tracking

    uri, experiment_id = store.open_experiment(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, job.launch_dir)
    if (done := tracking.find_finished_run(uri, experiment_id, cfg)) is not None:
        return tracking.reuse_run(uri, done, cfg.mlflow.parent_run_id, job.name)
    data = load_dataset(cfg.data)  # the splits, their shapes, class count and normalization
    stopped = resume.claim_run(uri, experiment_id, cfg)  # a stopped run of this job to continue, if any
    with tracking.open_run(uri, experiment_id, job, cfg, stopped) as run:
        # Built inside the run: a model or optimizer that Keras rejects leaves a FAILED run that says why.
        model = instantiate(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, _convert_="all")
        training.compile_model(
            model, instantiate(cfg.optimizer), data, cfg.trainer.fast, cfg.mlflow.log_images_every > 0
        )
        client = mlflow.MlflowClient(uri)
        resumed = continuation.continue_run(client, stopped, model, job.output_dir)  # a new run: from nothing
        test_set = tracking.record_inputs(run, cfg, job, data, stopped)
        recorder, callbacks = recording.job_callbacks(cfg, run.info.run_id, uri, job.output_dir, data, resumed)
        # Stopped or not, what was trained is on record before the run ends; if the server answers, within bounds.
        with recorder.closing(), ending.guard(uri, run.info.run_id):
            training.fit(model, data, cfg.trainer, cfg.seed, resumed.first_epoch, callbacks)
        training.raise_if_diverged(recorder.history)
        epoch = fit_callbacks.weights_epoch(callbacks, recorder.last_epoch)  # the best one, when a callback restored it
        metrics = evaluation.record_evaluation(
            model, data, cfg.trainer.eval_batch_size, epoch, test_set, table_rows=cfg.mlflow.misclassified_table_rows
        )
    metrics = {key: values[min(epoch, len(values) - 1)] for key, values in recorder.history.items()} | metrics
    tracking.announce(run, metrics)
    return metrics


def start_job(cfg: DictConfig) -> Job:
    """Checks `cfg`, then sets up the process for its job: secrets masked in logs, the Keras backend and its
    threads, the last job's garbage collected, the seed."""
    from mnist_tracking.config.checks import check_config
    from mnist_tracking.runtime.backend import use_backend
    from mnist_tracking.runtime.job import current_job
    from mnist_tracking.runtime.redaction import install_log_filter

    install_log_filter()  # secrets in overrides or URIs never reach the console or the job's log file
    check_config(cfg)
    job = current_job()
    use_backend(cfg.backend, job.threads)  # before Keras is first imported, which reads it once
    import keras

    # A sweep's jobs may share this process: Keras's global state starts afresh. Python's own collector frees the last
    # job's garbage; a forced collection here would walk every object of Keras, JAX and MLflow, every job.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(cfg.seed)
    return job


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Runs `train` for one Hydra job and returns `optimized_metric` for sweepers (with `sweep.dry_run`: says what
    `train` would do, and returns nan)."""
    try:
        if OmegaConf.select(cfg, "sweep.dry_run"):  # a value that is no boolean fails the config's check there
            from mnist_tracking.sweeps.dry_run import plan_job

            return plan_job(cfg)
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
        elif refused(exc.__cause__):  # the server refused a write mid-run (a permission taken away): a reason too
            log.error("%s. The server refused it: check this user's permission on the experiment.", exc)
            if not multirun:
                sys.exit(2)
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
        from mnist_tracking.config.help import render_help

        print(render_help([arg for arg in args if not arg.startswith("-")]))
        return
    try:
        main()  # returns only when the command succeeded (Hydra turns a failure into SystemExit)
    except BaseException as exc:  # a stopped or failed sweep's parent ends now, before any exit handler runs
        sweeps = sys.modules.get("mnist_tracking.sweeps.callback")  # loaded by Hydra when a multirun starts
        if sweeps is not None:
            sweeps.close_open_sweeps(exc)
        raise


if __name__ == "__main__":
    cli()
