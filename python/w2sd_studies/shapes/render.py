"""Scenes of two coloured shapes, one above the other, and their captions.

A scene is "a red circle above a blue square" (or the same scene said with
"below"). The renderer is exact and deterministic, so it is also the ground truth
the scorer checks generated images against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SIZE = 32  # pixels
BACKGROUND = (235, 235, 235)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 30),
}
SHAPES = ("circle", "square", "triangle")
_PROMPT = re.compile(
    r"^an? (\w+) (\w+) (above|below) an? (\w+) (\w+)$",
)


@dataclass(frozen=True)
class Scene:
    """Two shapes: `top` above `bottom`, each a (colour, shape) pair."""

    top: tuple[str, str]
    bottom: tuple[str, str]

    def prompt(self, relation: str = "above", colours: bool = True) -> str:
        """Its caption; with ``colours=False`` the colours are left unsaid ("a circle above
        a square"), which the minority experiment (``shapes.minority``) asks about."""
        first, second = (self.top, self.bottom) if relation == "above" else (self.bottom, self.top)
        if not colours:
            return f"a {first[1]} {relation} a {second[1]}"
        return f"a {first[0]} {first[1]} {relation} a {second[0]} {second[1]}"


def parse_prompt(prompt: str) -> Scene | None:
    """The scene a prompt describes, or None if it is not a shapes prompt."""
    m = _PROMPT.match(prompt.strip().lower())
    if m is None:
        return None
    c1, s1, rel, c2, s2 = m.groups()
    if c1 not in COLOURS or c2 not in COLOURS or s1 not in SHAPES or s2 not in SHAPES:
        return None
    first, second = (c1, s1), (c2, s2)
    return Scene(first, second) if rel == "above" else Scene(second, first)


_LAYOUT_PROMPT = re.compile(r"^an? (\w+) (above|below) an? (\w+)$")


def parse_layout(prompt: str) -> tuple[str, str] | None:
    """(top shape, bottom shape) of a prompt that names shapes but no colours ("a circle
    above a square"), or None if it is not one."""
    m = _LAYOUT_PROMPT.match(prompt.strip().lower())
    if m is None or m.group(1) not in SHAPES or m.group(3) not in SHAPES:
        return None
    first, rel, second = m.groups()
    return (first, second) if rel == "above" else (second, first)


def all_scenes() -> list[Scene]:
    """Every scene with two different colours (4 * 3 * 3 * 3 = 108)."""
    return [
        Scene((c1, s1), (c2, s2))
        for c1 in COLOURS
        for s1 in SHAPES
        for c2 in COLOURS
        for s2 in SHAPES
        if c1 != c2
    ]


def sample_scenes(
    rng: np.random.Generator, n: int, relations: tuple[str, ...] = ("above", "below")
) -> list[tuple[Scene, str]]:
    """n random scenes, each captioned with one of `relations` at random."""
    scenes = all_scenes()
    picks = rng.integers(0, len(scenes), n)
    which = rng.integers(0, len(relations), n)
    return [(scenes[i], scenes[i].prompt(relations[r])) for i, r in zip(picks, which, strict=True)]


def _mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        h = r * 0.85
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    # An upward isosceles triangle: apex at the top, base 2r wide at the bottom.
    top, bottom = cy - r, cy + r
    half = r * (y - top) / (bottom - top)
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half)


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 image of `scene`, positions and sizes jittered by `rng`."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUND
    r = rng.uniform(4.5, 6.0, 2)
    cx = rng.uniform(9.0, 23.0, 2)
    cy = (rng.uniform(7.0, 10.0), rng.uniform(22.0, 25.0))
    for k, (colour, shape) in enumerate((scene.top, scene.bottom)):
        img[_mask(shape, cx[k], cy[k], r[k])] = COLOURS[colour]
    return img
