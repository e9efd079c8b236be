"""Images drawn straight into pixels with Pillow, cheap enough to draw every epoch (Matplotlib's figures of the same
take far longer; benchmarks/bench_train.py measures what an epoch's images cost): a grid of digits captioned with
their predicted class, and a confusion matrix."""

from __future__ import annotations

import functools

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

CELL = 56  # pixels a digit is drawn at
CAPTION = 16  # pixels of text above a digit, or of a title line
MATRIX_CELL = 28  # pixels of a confusion matrix cell


@functools.cache
def _font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _gray(image: np.ndarray, size: int) -> Image.Image:
    """A digit (any range, dark on light as MNIST is drawn) scaled to `size` pixels, nearest neighbour."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image, dtype=float)
    pixels = (255 * (1 - scaled)).astype(np.uint8)
    return Image.fromarray(pixels.reshape(pixels.shape[0], -1)).resize((size, size), Image.Resampling.NEAREST)


def digit_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, title: str, cols: int = 5) -> np.ndarray:
    """Digits in a grid, each captioned with its predicted class (in red, with the true one, where wrong); RGB."""
    rows = max(1, -(-len(images) // cols))
    step = CELL + CAPTION + 4
    canvas = Image.new("RGB", (cols * (CELL + 8), CAPTION + 4 + rows * step), "white")
    draw = ImageDraw.Draw(canvas)
    wrong = int(np.count_nonzero(labels != predicted))
    draw.text((4, 2), f"{title}: {wrong} of {len(labels)} wrong", fill="black", font=_font())
    for n, (image, label, guess) in enumerate(zip(images, labels, predicted)):
        left, top = (n % cols) * (CELL + 8) + 4, CAPTION + 4 + (n // cols) * step
        caption = str(guess) if label == guess else f"{guess} (true {label})"
        draw.text((left, top), caption, fill="black" if label == guess else "red", font=_font())
        canvas.paste(_gray(image, CELL), (left, top + CAPTION))
    return np.asarray(canvas)


def confusion_matrix(counts: np.ndarray, title: str) -> np.ndarray:
    """Counts of true (rows) against predicted (columns) classes as a heat map with the counts written in; RGB."""
    num_classes = len(counts)
    cell, margin = MATRIX_CELL, 2 * CAPTION + 8
    shade = colormaps["Blues"](counts / max(int(counts.max()), 1))[..., :3]
    heat = np.repeat(np.repeat((255 * shade).astype(np.uint8), cell, axis=0), cell, axis=1)
    canvas = Image.new("RGB", (margin + num_classes * cell + 4, margin + num_classes * cell + 4), "white")
    canvas.paste(Image.fromarray(heat), (margin, margin))
    draw = ImageDraw.Draw(canvas)
    accuracy = np.trace(counts) / max(int(counts.sum()), 1)
    draw.text((4, 2), f"{title} (accuracy {accuracy:.4f}); rows true, columns predicted", fill="black", font=_font())
    for k in range(num_classes):
        draw.text((margin + k * cell + cell / 2, margin - 2), str(k), fill="black", font=_font(), anchor="md")
        draw.text((margin - 6, margin + k * cell + cell / 2), str(k), fill="black", font=_font(), anchor="rm")
    for (row, col), n in np.ndenumerate(counts):
        center = (margin + col * cell + cell / 2, margin + row * cell + cell / 2)
        dark = n > counts.max() / 2
        draw.text(center, str(n), fill="white" if dark else "black", font=_font(10), anchor="mm")
    return np.asarray(canvas)
