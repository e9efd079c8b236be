"""What a multirun adds to its jobs: the parent run, its report and registered model, and a resumable search."""
