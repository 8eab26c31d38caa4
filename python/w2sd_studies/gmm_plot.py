"""Pictures of the Gaussian-mixture study, drawn with Pillow: 1-D histograms with the
true density, 2-D sample densities as heat maps."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

RANGE = (-4.0, 4.0)
PANEL = (360, 200)
MARGIN = 22


def _hist1d(values: np.ndarray, title: str, truth_density: np.ndarray) -> Image.Image:
    w, h = PANEL
    img = Image.new("RGB", PANEL, "white")
    draw = ImageDraw.Draw(img)
    bins = 96
    counts, edges = np.histogram(values, bins=bins, range=RANGE, density=True)
    top = max(float(counts.max()), float(truth_density.max())) * 1.05
    plot_h = h - 2 * MARGIN
    bar_w = (w - 10) / bins
    for i, c in enumerate(counts):
        x0 = 5 + i * bar_w
        draw.rectangle(
            [x0, h - MARGIN - plot_h * c / top, x0 + bar_w - 1, h - MARGIN], fill=(70, 110, 200)
        )
    xs = np.linspace(*RANGE, len(truth_density))
    pts = [
        (5 + (x - RANGE[0]) / (RANGE[1] - RANGE[0]) * (w - 10), h - MARGIN - plot_h * d / top)
        for x, d in zip(xs, truth_density, strict=True)
    ]
    draw.line(pts, fill=(220, 40, 40), width=2)
    draw.line([(5, h - MARGIN), (w - 5, h - MARGIN)], fill="black")
    draw.text((6, 4), title, fill="black")
    draw.text((6, h - MARGIN + 4), "-4", fill="black")
    draw.text((w / 2 - 3, h - MARGIN + 4), "0", fill="black")
    draw.text((w - 18, h - MARGIN + 4), "4", fill="black")
    return img


def _heat2d(points: np.ndarray, title: str) -> Image.Image:
    size = PANEL[1]
    bins = 64
    counts, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=bins, range=[RANGE, RANGE])
    scaled = np.sqrt(counts / max(counts.max(), 1))  # sqrt: small modes stay visible
    pixels = (255 * (1 - scaled)).astype(np.uint8)[::-1]  # y up
    heat = Image.fromarray(pixels, "L").resize((size - 2 * MARGIN, size - 2 * MARGIN), 0)
    img = Image.new("RGB", (size, size), "white")
    img.paste(heat.convert("RGB"), (MARGIN, MARGIN))
    ImageDraw.Draw(img).text((4, 4), title, fill="black")
    return img


def _grid(panels: list[Image.Image], columns: int) -> Image.Image:
    w = max(p.width for p in panels)
    h = max(p.height for p in panels)
    rows = (len(panels) + columns - 1) // columns
    out = Image.new("RGB", (w * columns, h * rows), "white")
    for i, p in enumerate(panels):
        out.paste(p, ((i % columns) * w, (i // columns) * h))
    return out


def study_picture(study: dict[str, Any], true_density_1d: Any) -> Image.Image:
    """1-D panels (truth, DDIM, W2SD at two lambdas, gap 0, gap < 0), then 2-D panels."""
    plots, rows = study["plots"], study["rows"]
    figure = {
        f"{r.case}|{r.gap}|{r.method}|{r.steps}|{r.reflection}|{r.inversion}": r for r in rows
    }

    def title(key: str) -> str:
        r = figure[key]
        what = f"minority {r.runtime:.3f}" if r.case == "1d" else f"TV {r.runtime:.3f}"
        run = f"{r.method} T={r.steps}" + (
            f" λ={r.reflection}".replace("λ", "lambda") if r.reflection else ""
        )
        return f"{r.gap}, {run}: {what}"

    xs = np.linspace(-4, 4, 400)
    density = true_density_1d(xs)
    one_d = [_hist1d(study["truth"]["1d"][:, 0], "truth: minority 0.500", density)]
    for key in (
        "1d|gap > 0|DDIM|25|0|official",
        "1d|gap > 0|W2SD|25|12|official",
        "1d|gap > 0|W2SD|25|24|official",
        "1d|gap = 0|W2SD|25|12|official",
        "1d|gap < 0|W2SD|25|12|official",
    ):
        one_d.append(_hist1d(plots[key][:, 0], title(key), density))
    two_d = [_heat2d(study["truth"]["2d"], "truth (equal modes)")]
    for key in (
        "2d|gap > 0|DDIM|25|0|official",
        "2d|gap > 0|W2SD|25|12|official",
        "2d|gap > 0|W2SD|25|24|official",
    ):
        two_d.append(_heat2d(plots[key], title(key).replace("gap > 0, ", "")))
    top = _grid(one_d, 3)
    bottom = _grid(two_d, 4)
    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    return out
