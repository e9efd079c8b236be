"""Everything MLflow: the store, a job's run from start to end, the recorder callback, evaluation and the logged
model, resuming stopped runs, the registry and the figures rendered beside a run."""
