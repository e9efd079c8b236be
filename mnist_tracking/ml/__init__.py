"""Machine learning, without tracking: datasets, models, the batch order, the fused epoch, fitting, checkpoints,
figures and Keras callbacks."""
