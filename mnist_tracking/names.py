"""Names that a writer and a reader must agree on: the tags, params and metrics of runs and sweeps.

Each is written by one module and read by another (or by a user filtering runs in the MLflow UI), so
each lives here once. No imports: any module may take these without pulling in anything else.
"""

# On every job run.
CONFIG_HASH_TAG = "config_hash"  # hash of the resolved config less tracking keys: finds a job's earlier runs
OVERRIDES_TAG = "overrides"  # JSON list of the job's command-line overrides (secrets masked)
COMMAND_TAG = "command"  # the shell command that runs this job (or sweep) again
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: nests a job under its sweep in the UI
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the checkout's HEAD
OWNER_TAG = "owner"  # "host:pid:start" of the process training the run, to tell a dead one from a live one
SLURM_JOB_TAG = "slurm_job"  # "job id:restart count" when Slurm runs the job (a requeued job keeps its id)
CHECKPOINT_EPOCH_TAG = "checkpoint_epoch"  # the last epoch (0-based) whose checkpoint is stored with the run
CHECKPOINT_COPY_TAG = "checkpoint_local_copy"  # "host:path" of the same checkpoint in the job's output folder
CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.npz"  # the run's one current checkpoint, replaced as training goes
ATTEMPTS_TAG = "attempts"  # how many processes have trained this run (1 + resumes)
RESUMED_FROM_EPOCH_TAG = "resumed_from_epoch"  # the first epoch (0-based) the latest attempt trained
ATTEMPT_FROM_EPOCH_TAG = "attempt_{}_from_epoch"  # .format(n): the first epoch attempt n trained (attempt 1: 0)
FAILURE_REASON_TAG = "failure_reason"  # why a FAILED run failed, e.g. "loss became nan at epoch 3"
MOST_CONFUSED_TAG = "most_confused"  # the test set's three most-confused digit pairs, "true→predicted (count)"
DIVERGED_TAG = "diverged"  # "true" when the loss stopped being finite: resuming would diverge again
CHECKPOINT_UNUSABLE_TAG = "checkpoint_unusable"  # "true" when the checkpoint could not be loaded: not continued
SUPERSEDED_TAG = "superseded_by"  # a newer run of the same job in the same sweep, which the report shows instead
# Also on a sweep's parent: the config's `tags` under their own names, and its `notes` as this MLflow tag.
NOTE_TAG = "mlflow.note.content"  # MLflow's own: the run's description, shown on its page in the UI

# On a sweep's parent run.
SWEEP_TAG = "sweep"  # "true" on a multirun's parent run
SWEEPER_TAG = "sweeper"  # the Hydra sweeper's class (basic, Optuna)
LAUNCHER_TAG = "launcher"  # the Hydra launcher's class (basic, joblib, Ray, Submitit)
SWEEP_HASH_TAG = "sweep_hash"  # hash of the sweep's command line and base config: finds it to resume
SWEPT_KEYS_TAG = "swept_keys"  # JSON list of the config keys the sweep varies
OPTIMIZED_METRIC_TAG = "optimized_metric"  # what the sweep ranks jobs by
OPTIMIZED_DIRECTION_TAG = "optimized_direction"  # "maximize" or "minimize" that metric
REUSED_TAG_PREFIX = "reused_run."  # + run id: a FINISHED run of an earlier sweep that stands for a skipped job
FAILED_JOBS_TAG = "failed_jobs"  # JSON list of the run ids of jobs that did not finish
BEST_RUN_TAG = "best_run_id"  # the job run that ranked first
BEST_VALUE_TAG_PREFIX = "best."  # + swept key: that key's value in the best job
REGISTERED_MODEL_TAG = "registered_model"  # "<name>/<version>" registered from the best job
CHAMPION_TAG = "champion"  # "<name>/<version>" holding the champion alias after this sweep
PROMOTED_TAG = "champion_promoted"  # "true" when this sweep's best model took the champion alias
PROMOTION_REASON_TAG = "champion_reason"  # why it did or did not, with both models' scores
SWEPT_PARAM_PREFIX = "swept."  # + swept key: the values (or search space) the sweep covers
JOBS_PARAM = "jobs"  # how many jobs the report covers
IMPORTANCE_METRIC_PREFIX = "importance."  # + swept key: its fANOVA importance for optimized_metric (they sum to 1)
PARALLEL_COORDINATES_ARTIFACT = "sweep/parallel_coordinates.png"  # every finished job's swept values and metric

# The Model Registry.
CHAMPION_ALIAS = "champion"  # models:/<registered model>@champion: the best model so far, moved only by a better one

# Metrics. What train() returns and a sweep can optimize: the last epoch's Keras metrics and the test scores.
OPTIMIZABLE_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "accuracy", "loss")
DIRECTIONS = ("maximize", "minimize")  # Optuna's words for them
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # what Keras logs each epoch, with step = epoch
CURVES = ("val_accuracy", "val_loss")  # per-epoch metrics a sweep report draws for every job
# MLflow datasets: a run's splits, named for its dataset (mnist_train, digits_test, ...), by dataset context.
DATASET_NAME = "{dataset}_{split}"
DATASET_CONTEXT_TAG = "mlflow.data.context"  # MLflow's own, on a run's dataset input: its context (a key below)
DATASET_SPLITS = {"training": "train", "validation": "validation", "testing": "test"}
OPTIMIZER_STEPS_METRIC = "optimizer_steps"  # updates a run made (the fast path makes as many as a plain fit)
BEST_METRIC = "best_{}"  # .format(metric): a job run's best per-epoch value of it so far, in optimized_direction
BEST_EPOCH_METRIC = "best_epoch"  # the epoch (0-based, the step) that best value is from
CONFUSION_COUNTS = "confusion_counts"  # Keras metric (val_confusion_counts in an epoch's logs): a matrix, not logged
EPOCH_SAMPLE_KEY = "validation_sample"  # image key: a fixed sample of validation digits as predicted, per epoch
EPOCH_CONFUSION_KEY = "validation_confusion_matrix"  # image key: the validation confusion matrix, per epoch
STOPPED_EPOCH_TAG = "stopped_epoch"  # the last epoch (0-based) a fit trained when a callback stopped it early
# A run's metrics that are not per epoch (by prefix); every other one is, whatever adds it (a callback, say).
NOT_EPOCH_METRICS = ("test_", "system/", "best_", OPTIMIZER_STEPS_METRIC)
