"""Model builders; each config in conf/model/ names one of these as `_target_` with its arguments."""

from __future__ import annotations

import keras

INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10


def mlp(hidden_units: int | list[int], activation: str) -> keras.Model:
    """Flatten -> one Dense(units, activation) per entry of `hidden_units` -> Dense(10, softmax).

    `hidden_units=[]` is the study's `dense` model; `hidden_units=64` its `mlp64`.
    """
    units = [hidden_units] if isinstance(hidden_units, int) else list(hidden_units)
    hidden = [keras.layers.Dense(n, activation=activation) for n in units]
    name = "mlp_" + "_".join(map(str, units)) if units else "dense"
    return keras.Sequential(
        [keras.Input(shape=INPUT_SHAPE), keras.layers.Flatten(), *hidden,
         keras.layers.Dense(NUM_CLASSES, activation="softmax")],
        name=name,
    )


def on_raw_pixels(model: keras.Model, scale: float, offset: float) -> keras.Model:
    """`model` behind a Rescaling layer (x * scale + offset): it takes pixels as an image holds them (0-255,
    shape (n, 28, 28)) and normalizes them as training did, so that no client needs to know how."""
    return keras.Sequential([keras.Input(shape=INPUT_SHAPE), keras.layers.Rescaling(scale, offset), model],
                            name=f"{model.name}_on_pixels")


def cnn(filters: list[int], kernel_size: int, dropout: float) -> keras.Model:
    """Per entry of `filters`: Conv2D(f, kernel_size, ReLU) -> MaxPool(2); then Dropout -> Dense(10, softmax)."""
    blocks = []
    for f in filters:
        blocks += [keras.layers.Conv2D(f, kernel_size, activation="relu"), keras.layers.MaxPooling2D(2)]
    return keras.Sequential(
        [keras.Input(shape=INPUT_SHAPE), keras.layers.Reshape((*INPUT_SHAPE, 1)), *blocks,
         keras.layers.Flatten(), keras.layers.Dropout(dropout), keras.layers.Dense(NUM_CLASSES, activation="softmax")],
        name="cnn",
    )
