"""Hydra plugins must live in the `hydra_plugins` namespace: this one is mnist_tracking's Optuna sweeper."""
