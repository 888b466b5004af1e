"""Generated images of coloured shapes: the known structure behind visual search and harmful content.

Every image holds one object, a shape (circle, square, diamond, ring, cross) in a colour (red,
green, blue, yellow) of some size, drawn at a random position on a dim random background with pixel
noise. The class is (shape, colour), so retrieval quality is measurable without labels ever reaching
the contrastive training: its positive pairs are two renderings of the same object (`views`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IMAGE_SIZE = 32
SHAPES = ("circle", "square", "diamond", "ring", "cross")
COLOURS = ("red", "green", "blue", "yellow")
_RGB = np.array([[0.9, 0.15, 0.15], [0.15, 0.8, 0.2], [0.2, 0.3, 0.95], [0.95, 0.85, 0.1]], dtype=np.float32)


@dataclass(frozen=True)
class ShapeImages:
    images: np.ndarray  # [N, 3, 32, 32] float32 in [0, 1]
    shape: np.ndarray  # [N] index into SHAPES
    colour: np.ndarray  # [N] index into COLOURS
    radius: np.ndarray  # [N] object size in pixels

    @property
    def label(self) -> np.ndarray:
        """(shape, colour) class index in [0, len(SHAPES) * len(COLOURS))."""
        return self.shape * len(COLOURS) + self.colour


def render(shape: np.ndarray, colour: np.ndarray, radius: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws one image per object with a random placement, background and noise."""
    n = len(shape)
    grid = np.arange(IMAGE_SIZE, dtype=np.float32)
    cy, cx = (rng.uniform(9, 23, size=(2, n, 1, 1))).astype(np.float32)
    radius = radius.astype(np.float32).reshape(n, 1, 1)
    dy, dx = np.abs(grid[None, :, None] - cy), np.abs(grid[None, None, :] - cx)
    d2 = dx**2 + dy**2
    masks = np.stack(
        [
            d2 <= radius**2,
            np.maximum(dx, dy) <= radius * 0.85,
            dx + dy <= radius * 1.2,
            (d2 <= radius**2) & (d2 >= (radius * 0.55) ** 2),
            (np.minimum(dx, dy) <= radius * 0.3) & (np.maximum(dx, dy) <= radius),
        ]
    )
    mask = masks[shape, np.arange(n)][:, None].astype(np.float32)  # [N, 1, H, W]
    fill = _RGB[colour] + rng.normal(0, 0.05, size=(n, 3)).astype(np.float32)
    background = rng.uniform(0.0, 0.45, size=(n, 3)).astype(np.float32)
    image = background[:, :, None, None] * (1 - mask) + fill[:, :, None, None] * mask
    image += rng.normal(0, 0.05, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def generate(n: int, rng: np.random.Generator) -> ShapeImages:
    shape = rng.integers(0, len(SHAPES), size=n)
    colour = rng.integers(0, len(COLOURS), size=n)
    radius = rng.uniform(5, 10, size=n)
    return ShapeImages(render(shape, colour, radius, rng), shape, colour, radius)


def views(objects: ShapeImages, index: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """A random view of each indexed object: re-drawn elsewhere, slightly resized, on a new
    background, with brightness jitter. What stays the same across views is shape and colour."""
    radius = objects.radius[index] * rng.uniform(0.85, 1.15, size=len(index))
    image = render(objects.shape[index], objects.colour[index], radius, rng)
    image *= rng.uniform(0.85, 1.15, size=(len(index), 1, 1, 1)).astype(np.float32)
    return torch.from_numpy(np.clip(image, 0.0, 1.0))
