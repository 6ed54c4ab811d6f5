"""Picture grids for people: originals beside reconstructions and error heat maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

HEAT_MAX_ERROR = 64.0
"""Mean absolute error (0..255 scale) shown at full heat; larger errors saturate."""

# Anchor colours of the heat map (black, purple, red, orange, pale yellow), evenly spaced.
_HEAT_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def error_heatmap(reference: np.ndarray, test: np.ndarray, max_error: float = HEAT_MAX_ERROR) -> np.ndarray:
    """uint8 (H, W, 3) pair -> uint8 (H, W, 3) heat map of the per-pixel mean absolute error."""
    err = np.abs(reference.astype(np.float64) - test.astype(np.float64)).mean(axis=2)
    t = np.clip(err / max_error, 0.0, 1.0) * (len(_HEAT_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_HEAT_ANCHORS) - 2)
    frac = (t - i)[..., None]
    rgb = _HEAT_ANCHORS[i] * (1 - frac) + _HEAT_ANCHORS[i + 1] * frac
    return np.round(rgb).astype(np.uint8)


def _fit(image: np.ndarray, cell: int) -> Image.Image:
    im = Image.fromarray(image)
    scale = cell / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    elif scale >= 2:  # small images: whole-pixel enlargement, so pixels stay visible as pixels
        im = im.resize((im.width * int(scale), im.height * int(scale)), Image.NEAREST)
    canvas = Image.new("RGB", (cell, cell), (255, 255, 255))
    canvas.paste(im, ((cell - im.width) // 2, (cell - im.height) // 2))
    return canvas


def comparison_grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], *, cell: int = 256, pad: int = 4) -> Image.Image:
    """A grid image: one row per image, one column per label (uint8 (H, W, 3) arrays, any sizes,
    each fitted into a `cell` x `cell` square, small ones enlarged by whole factors), with the
    labels written above the columns."""
    header = 18
    cols = len(labels)
    width = cols * (cell + pad) + pad
    height = header + len(rows) * (cell + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(labels):
        draw.text((pad + c * (cell + pad) + 4, 3), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        if len(row) != cols:
            raise ValueError(f"row {r} has {len(row)} images for {cols} labels")
        for c, image in enumerate(row):
            grid.paste(_fit(image, cell), (pad + c * (cell + pad), header + pad + r * (cell + pad)))
    return grid


def class_rows(images: np.ndarray, names: Sequence[str], *, cell: int = 64, pad: int = 4) -> Image.Image:
    """A grid image of samples by class: uint8 (C, S, H, W, 3) -> one row per class (its name
    written at the left), S samples across; small images enlarged by whole factors to `cell`."""
    classes, samples = images.shape[:2]
    if len(names) != classes:
        raise ValueError(f"{len(names)} names for {classes} classes")
    label = 8 + 7 * max((len(n) for n in names), default=1)
    grid = Image.new("RGB", (label + samples * (cell + pad) + pad, classes * (cell + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r in range(classes):
        top = pad + r * (cell + pad)
        draw.text((4, top + cell // 2 - 6), names[r], fill=(0, 0, 0))
        for c in range(samples):
            grid.paste(_fit(images[r, c], cell), (label + pad + c * (cell + pad), top))
    return grid
