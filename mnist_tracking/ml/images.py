"""Images drawn straight into pixels with Pillow, cheap enough to draw every epoch (Matplotlib's figures of the same
take far longer; benchmarks/bench_train.py measures what an epoch's images cost): a grid of digits captioned with
their predicted class, and a confusion matrix.

Both are palette images (one byte a pixel, a fixed palette of grays, blues and red): PNG encodes them several times
faster than RGB, and what does not change between epochs (the digits, the matrix's axes) is drawn once."""

from __future__ import annotations

import functools

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

CELL = 56  # pixels a digit is drawn at
CAPTION = 16  # pixels of text above a digit, or of a title line
MATRIX_CELL = 28  # pixels of a confusion matrix cell

# The palette's indices: a ramp of grays from black to white, a ramp of Matplotlib's "Blues", and red.
GRAYS = 128
BLACK, WHITE = 0, GRAYS - 1
BLUES, SHADES = GRAYS, 64
RED = BLUES + SHADES


@functools.cache
def _palette() -> list[int]:
    grays = np.repeat(np.linspace(0, 255, GRAYS).round()[:, None], 3, axis=1)
    blues = 255 * colormaps["Blues"](np.linspace(0, 1, SHADES))[:, :3]
    colors = np.concatenate([grays, blues, [[214, 39, 40]]]).round().astype(np.uint8)
    return colors.ravel().tolist()


def _canvas(pixels: np.ndarray) -> Image.Image:
    """A palette image of the palette's indices `pixels`."""
    image = Image.fromarray(pixels, mode="P")
    image.putpalette(_palette())
    return image


@functools.cache
def _font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _gray(image: np.ndarray, size: int) -> np.ndarray:
    """A digit (any range, dark on light as MNIST is drawn) as gray indices, scaled to `size` pixels."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image, dtype=float)
    pixels = ((GRAYS - 1) * (1 - scaled)).round().astype(np.uint8).reshape(image.shape[0], -1)
    repeat = -(-size // pixels.shape[0])
    return np.repeat(np.repeat(pixels, repeat, axis=0), repeat, axis=1)[:size, :size]  # nearest neighbour


class DigitGrid:
    """A fixed set of digits in a grid, drawn once; each call captions them with what the model predicts.

    Args:
        images: The digits.
        labels: Their true classes.
        cols: Digits per row.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, cols: int = 5):
        self.labels, self.cols = np.asarray(labels), cols
        rows = max(1, -(-len(images) // cols))
        self.step = CELL + CAPTION + 4
        base = np.full((CAPTION + 4 + rows * self.step, cols * (CELL + 8)), WHITE, dtype=np.uint8)
        for n, image in enumerate(images):
            left, top = self._corner(n)
            base[top + CAPTION : top + CAPTION + CELL, left : left + CELL] = _gray(image, CELL)
        self.base = base

    def _corner(self, n: int) -> tuple[int, int]:
        return (n % self.cols) * (CELL + 8) + 4, CAPTION + 4 + (n // self.cols) * self.step

    def __call__(self, predicted: np.ndarray, title: str) -> Image.Image:
        """The digits captioned with `predicted` (in red, with the true class, where wrong)."""
        canvas = _canvas(self.base.copy())
        draw = ImageDraw.Draw(canvas)
        wrong = int(np.count_nonzero(self.labels != predicted))
        draw.text((4, 2), f"{title}: {wrong} of {len(self.labels)} wrong", fill=BLACK, font=_font())
        for n, (label, guess) in enumerate(zip(self.labels, predicted)):
            caption = str(guess) if label == guess else f"{guess} (true {label})"
            draw.text(self._corner(n), caption, fill=BLACK if label == guess else RED, font=_font())
        return canvas


def digit_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, title: str, cols: int = 5) -> Image.Image:
    """Digits in a grid, each captioned with its predicted class (in red, with the true one, where wrong)."""
    return DigitGrid(images, labels, cols)(predicted, title)


@functools.cache
def _matrix_base(num_classes: int) -> np.ndarray:
    """A confusion matrix's canvas: its axes' names and class numbers."""
    cell, margin = MATRIX_CELL, 2 * CAPTION + 8
    canvas = _canvas(np.full((margin + num_classes * cell + 4,) * 2, WHITE, dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, CAPTION + 1), "pred.", fill=BLACK, font=_font(10))  # the corner says which axis is which
    draw.text((2, CAPTION + 11), "true", fill=BLACK, font=_font(10))
    for k in range(num_classes):
        draw.text((margin + k * cell + cell / 2, margin - 2), str(k), fill=BLACK, font=_font(), anchor="md")
        draw.text((margin - 6, margin + k * cell + cell / 2), str(k), fill=BLACK, font=_font(), anchor="rm")
    return np.asarray(canvas)


def confusion_matrix(counts: np.ndarray, title: str) -> Image.Image:
    """Counts of true (rows) against predicted (columns) classes as a heat map with the counts written in."""
    num_classes = len(counts)
    cell, margin = MATRIX_CELL, 2 * CAPTION + 8
    pixels = _matrix_base(num_classes).copy()
    shade = (BLUES + (SHADES - 1) * counts / max(int(counts.max()), 1)).round().astype(np.uint8)
    end = margin + num_classes * cell
    pixels[margin:end, margin:end] = np.repeat(np.repeat(shade, cell, axis=0), cell, axis=1)
    canvas = _canvas(pixels)
    draw = ImageDraw.Draw(canvas)
    accuracy = np.trace(counts) / max(int(counts.sum()), 1)
    draw.text((4, 2), f"{title}: accuracy {accuracy:.4f}", fill=BLACK, font=_font())
    for (row, col), n in np.ndenumerate(counts):
        center = (margin + col * cell + cell / 2, margin + row * cell + cell / 2)
        dark = n > counts.max() / 2
        draw.text(center, str(n), fill=WHITE if dark else BLACK, font=_font(10), anchor="mm")
    return canvas
