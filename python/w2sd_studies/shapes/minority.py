"""The minority experiment: a prompt that leaves an attribute unsaid, models whose bias on
it is designed, and the distance of what they draw from the truth.

A layout prompt names two shapes and no colours ("a circle above a square"). In the world
the renderer defines, the top shape's colour is then uniform over the four colours: that
is the truth. The strong model is fine-tuned from the base model on data where, for layout
captions, red is drawn on top more often than its share (the fully specified captions stay
uniform, so prompt adherence is still learnt); each weak model continues from the strong
one on data with its own red share (``shapes.finetune``):

| model | red's share on top in its data | meant to be |
| --- | --- | --- |
| strong | 0.40 | biased towards red |
| weak (gap > 0) | 0.75 | more so, the same way (Theorem 2's condition) |
| weak-same (gap ~ 0) | 0.40 | as biased as the strong model |
| weak-opposite (gap < 0) | 0.10 | biased the other way |

What each model learnt is measured, not assumed (docs/shapes-minority.md).

The measure is the total-variation distance of the top colour's distribution to uniform,
with a bootstrap 95% interval, paired when two methods ran on the same seeds. Needs
numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .render import COLOURS, SHAPES, Scene, all_scenes, parse_layout
from .scorer import LABEL_NAMES, MIN_AREA, classify_pixels, largest_region, shape_of

FAVOURED = "red"
# The favoured colour's share on top, for layout captions, in each model's training data.
RED_SHARE = {"strong": 0.40, "weak": 0.75, "weak-same": 0.40, "weak-opposite": 0.10}
# The gap case each weak model makes with the strong one.
GAP_CASES = {"weak": "gap > 0", "weak-same": "gap ~ 0", "weak-opposite": "gap < 0"}
TRUTH = np.full(len(COLOURS), 1.0 / len(COLOURS))
COLOUR_NAMES = list(COLOURS)


def layout_prompts() -> list[str]:
    """The nine layout prompts, one per (top shape, bottom shape)."""
    return [f"a {top} above a {bottom}" for top in SHAPES for bottom in SHAPES]


def top_colour_weights(red_share: float) -> np.ndarray:
    """The top colour's distribution in COLOURS order: red at `red_share`, the rest equal."""
    if not 0.0 <= red_share <= 1.0:
        raise ValueError(f"red_share must be in [0, 1], got {red_share}")
    rest = (1.0 - red_share) / (len(COLOURS) - 1)
    return np.array([red_share if c == FAVOURED else rest for c in COLOURS])


@dataclass(frozen=True)
class Draw:
    """One training example before its colours are fixed: the scene it starts from,
    whether its caption leaves colours unsaid, and the two uniforms that pick them."""

    scene: Scene
    layout: bool
    u_top: float
    u_bottom: float

    def caption(self, red_share: float) -> tuple[Scene, str]:
        if not self.layout:
            return self.scene, self.scene.prompt("above")
        cdf = np.cumsum(top_colour_weights(red_share))
        top = COLOUR_NAMES[min(int(np.searchsorted(cdf, self.u_top, side="right")), 3)]
        others = [c for c in COLOUR_NAMES if c != top]
        bottom = others[min(int(self.u_bottom * len(others)), len(others) - 1)]
        scene = Scene((top, self.scene.top[1]), (bottom, self.scene.bottom[1]))
        return scene, scene.prompt("above", colours=False)


def draws(rng: np.random.Generator, n: int, layout_fraction: float) -> list[Draw]:
    """n examples whose randomness does not depend on the colour bias: every model's data
    set is made from the same draws, so two models' data differ only where the bias moves
    a layout example's top colour."""
    scenes = all_scenes()
    picks = rng.integers(0, len(scenes), n)
    layout = rng.random(n) < layout_fraction
    u = rng.random((n, 2))
    return [
        Draw(scenes[i], bool(lay), float(a), float(b))
        for i, lay, (a, b) in zip(picks, layout, u, strict=True)
    ]


def _regions(image: np.ndarray) -> list[tuple[int, float, np.ndarray]]:
    """(colour index, centre row, region) of each colour's largest region, largest first."""
    labels = classify_pixels(image)
    found = []
    for k, name in enumerate(COLOUR_NAMES):
        region = largest_region(labels == LABEL_NAMES.index(name))
        if region.sum() >= MIN_AREA:
            found.append((int(region.sum()), k, float(np.nonzero(region)[0].mean()), region))
    found.sort(key=lambda r: -r[0])
    return [(k, row, region) for _, k, row, region in found]


def score_layouts(images: np.ndarray, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per image of a layout prompt: the top shape's colour index (-1 when two coloured
    shapes are not found) and adherence (two shapes of two colours, the named shape on
    top, the other below)."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    top_colour = np.full(len(images), -1)
    adherence = np.zeros(len(images))
    for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
        layout = parse_layout(prompt)
        if layout is None:
            raise ValueError(f"not a layout prompt: {prompt!r} (e.g. 'a circle above a square')")
        regions = _regions(image)[:2]
        if len(regions) < 2:
            continue
        top, bottom = sorted(regions, key=lambda r: r[1])
        top_colour[i] = top[0]
        adherence[i] = float(shape_of(top[2]) == layout[0] and shape_of(bottom[2]) == layout[1])
    return {"top_colour": top_colour, "adherence": adherence}


def colour_distribution(top_colour: np.ndarray) -> np.ndarray:
    """The top colour's distribution over the images where it was found."""
    found = top_colour[top_colour >= 0]
    counts = np.bincount(found, minlength=len(COLOUR_NAMES)).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def tv_to_truth(top_colour: np.ndarray) -> float:
    """Total-variation distance of the found top colours' distribution to uniform."""
    return float(0.5 * np.abs(colour_distribution(top_colour) - TRUTH).sum())


def bootstrap_tv(
    runs: dict[str, np.ndarray], boots: int = 2000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """TV to the truth of each run's top colours, with percentile 95% intervals from one
    bootstrap over image indices (paired: every run resampled at the same indices), and
    the same for each run's difference to the first one."""
    names = list(runs)
    n = len(runs[names[0]])
    if any(len(v) != n for v in runs.values()):
        raise ValueError("paired runs need the same number of images")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (boots, n))
    stats = {k: np.array([tv_to_truth(runs[k][row]) for row in idx]) for k in names}
    out: dict[str, dict[str, float]] = {}
    for k in names:
        lo, hi = np.percentile(stats[k], [2.5, 97.5])
        out[k] = {"mean": tv_to_truth(runs[k]), "ci95": [float(lo), float(hi)]}  # type: ignore[dict-item]
    base = names[0]
    for k in names[1:]:
        diff = stats[k] - stats[base]
        lo, hi = np.percentile(diff, [2.5, 97.5])
        out[f"{k} - {base}"] = {
            "mean": tv_to_truth(runs[k]) - tv_to_truth(runs[base]),
            "ci95": [float(lo), float(hi)],  # type: ignore[dict-item]
        }
    return out
