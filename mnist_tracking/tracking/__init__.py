"""Everything MLflow: the store, a job's run from start to end, what it is given, the recorder callback,
evaluation and the logged model, resuming stopped runs, and the registry."""
