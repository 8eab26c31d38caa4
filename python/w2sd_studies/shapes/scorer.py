"""Objective prompt adherence for shapes prompts: rules that the renderer obeys.

Every pixel is assigned to the nearest palette colour (or to nothing when it is far
from all of them). For each shape the prompt names, the largest connected region of
its colour must exist, the top one must lie above the bottom one, and each region's
fill of its bounding box tells its shape (square ~1, circle ~pi/4, triangle ~1/2).
The thresholds were set on rendered images (the truth), never on generated ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .render import BACKGROUND, COLOURS, parse_prompt

_PALETTE = np.array([BACKGROUND, *COLOURS.values()], np.float32)
LABEL_NAMES = ["background", *COLOURS]
MAX_COLOUR_DISTANCE = 90.0  # RGB distance beyond which a pixel is no palette colour
MIN_AREA = 8  # pixels: smaller regions are noise, not a shape


def classify_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) index into background + COLOURS, or -1 for none."""
    d = np.linalg.norm(image[:, :, None, :].astype(np.float32) - _PALETTE, axis=-1)
    label = d.argmin(-1)
    label[d.min(-1) > MAX_COLOUR_DISTANCE] = -1
    return label


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (empty mask -> empty)."""
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        region = []
        queue = deque([(int(y0), int(x0))])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


def shape_of(region: np.ndarray) -> str:
    """circle, square or triangle from the region's fill of its bounding box."""
    ys, xs = np.nonzero(region)
    fill = len(ys) / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    if fill >= 0.88:
        return "square"
    return "circle" if fill >= 0.64 else "triangle"


@dataclass(frozen=True)
class ShapeScore:
    """Per image: both colours present, their vertical order, both shapes, and all of it."""

    colours: float
    relation: float
    shapes: float
    adherence: float


def score_image(image: np.ndarray, prompt: str) -> ShapeScore:
    scene = parse_prompt(prompt)
    if scene is None:
        raise ValueError(
            f"not a shapes prompt: {prompt!r} (e.g. 'a red circle above a blue square')"
        )
    labels = classify_pixels(image)
    found = []
    for colour, shape in (scene.top, scene.bottom):
        region = largest_region(labels == LABEL_NAMES.index(colour))
        if region.sum() < MIN_AREA:
            found.append(None)
        else:
            found.append((np.nonzero(region)[0].mean(), shape_of(region) == shape))
    colours = all(f is not None for f in found)
    top, bottom = found
    relation = colours and top[0] < bottom[0]  # type: ignore[index]
    shapes = colours and top[1] and bottom[1]  # type: ignore[index]
    return ShapeScore(float(colours), float(relation), float(shapes), float(relation and shapes))


def score_images(images: np.ndarray, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """The scorer ``w2sd eval`` uses by default: uint8 (N, H, W, 3) images and their
    prompts -> per-image scores in [0, 1] by metric; "adherence" is the headline."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    rows = [score_image(img, p) for img, p in zip(images, prompts, strict=True)]
    return {
        name: np.array([getattr(r, name) for r in rows], np.float64)
        for name in ("adherence", "colours", "relation", "shapes")
    }
