"""Hydra-composed Keras training on MNIST, every run tracked in MLflow."""

__version__ = "0.1.0"
