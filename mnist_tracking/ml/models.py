"""Model builders; each config in conf/model/ names one of these as `_target_` with its arguments.

`input_shape` and `num_classes` come from the dataset (train passes them), not from the model's config.
"""

from __future__ import annotations

import keras


def mlp(hidden_units: int | list[int], activation: str, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Flatten -> one Dense(units, activation) per entry of `hidden_units` -> Dense(num_classes, softmax).

    `hidden_units=[]` is the study's `dense` model; `hidden_units=64` its `mlp64`.
    """
    units = [hidden_units] if isinstance(hidden_units, int) else list(hidden_units)
    hidden = [keras.layers.Dense(n, activation=activation) for n in units]
    name = "mlp_" + "_".join(map(str, units)) if units else "dense"
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            *hidden,
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name=name,
    )


def cnn(
    filters: list[int], kernel_size: int, dropout: float, input_shape: tuple[int, ...], num_classes: int
) -> keras.Model:
    """Per entry of `filters`: Conv2D(f, kernel_size, ReLU) -> MaxPool(2); then Dropout -> Dense(num_classes)."""
    blocks = []
    for f in filters:
        blocks += [keras.layers.Conv2D(f, kernel_size, activation="relu"), keras.layers.MaxPooling2D(2)]
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Reshape((*input_shape, 1)),
            *blocks,
            keras.layers.Flatten(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn",
    )


def on_raw_pixels(model: keras.Model, scale: float, offset: float) -> keras.Model:
    """`model` behind a Rescaling layer (x * scale + offset): it takes pixels as an image holds them and
    normalizes them as training did, so that no client needs to know how."""
    return keras.Sequential(
        [keras.Input(shape=model.input_shape[1:]), keras.layers.Rescaling(scale, offset), model],
        name=f"{model.name}_on_pixels",
    )
