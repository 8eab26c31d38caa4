"""``w2sd demo``: the minority experiment (``shapes.minority``) through the runtime.

The strong model and one of the weak ones (``--weak``: weak for gap > 0, weak-same for
gap ~ 0, weak-opposite for gap < 0) are exported and built into one engine. Layout
prompts ("a circle above a square") are drawn with plain DDIM at T + 2 lambda steps and
with W2SD at T, lambda (the same UNet calls), image i from seed ``seed + i`` for both.
The headline is the total-variation distance of the top shape's colour to the truth
(uniform), with paired bootstrap intervals; layout adherence stands beside it, so a gain
in diversity bought with adherence would show.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import EvalOptions, generate, grid, mean_ci, method_runs
from .shapes import models_dir
from .shapes.minority import (
    COLOUR_NAMES,
    GAP_CASES,
    RED_SHARE,
    TRUTH,
    bootstrap_tv,
    colour_distribution,
    layout_prompts,
    score_layouts,
)

# Both roles' guidance: chosen for the DDIM baseline on held-out seeds
# (HELD_OUT_SEED onwards; docs/shapes-minority.md has the table), then fixed.
GUIDANCE = 1.0
HELD_OUT_SEED = 1_000_000
HEADLINE = "top-colour TV to truth"


def minority_engine(
    work: Path, weak: str, log: Callable[[str], None], models: Path | None = None
) -> Path:
    """Export and build (once) the engine of the strong model and `weak` from `models`
    (default: the shipped ones); weak "strong" gives the engine DDIM alone needs."""
    from engines.build import build_engine
    from export.engine_export import ExportOptions, export_engine

    if weak not in GAP_CASES and weak != "strong":
        raise ValueError(f"weak must be one of {', '.join(GAP_CASES)}, got {weak!r}")
    engine = work / f"minority-{weak}"
    if (engine / "cpu").is_dir():
        return engine
    models = models or models_dir()
    export_engine(
        ExportOptions(
            strong=models / "strong",
            weak=models / weak,
            out=engine,
            strong_guidance=GUIDANCE,
            weak_guidance=GUIDANCE,
            force=True,
            log=log,
        )
    )
    build_engine(str(engine), "cpu", log=log)
    return engine


def draw(
    engine: Path,
    num_images: int,
    log: Callable[[str], None],
    seed: int = 0,
    guidance: float = GUIDANCE,
    methods: tuple[str, ...] = ("DDIM", "W2SD"),
    inversion: str | None = None,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The prompts and each method's uint8 images, paired by seed."""
    from w2sd.runtime import W2SDRuntime

    opts = EvalOptions(
        engine_dir=engine,
        prompts=layout_prompts(),
        num_images=num_images,
        seed=seed,
        inversion=inversion,
        options={"strong_guidance": guidance, "weak_guidance": guidance},
    )
    rt = W2SDRuntime(engine, backend="cpu")
    runs = method_runs(opts)
    images = {m: generate(rt, opts, runs[m], m, log) for m in methods}
    prompts = [opts.prompts[i % len(opts.prompts)] for i in range(num_images)]
    return prompts, images


def summarise(scores: dict[str, dict[str, np.ndarray]], boots: int = 2000) -> dict[str, Any]:
    """The headline block, the adherence table and each method's colour distribution."""
    tv = bootstrap_tv({m: s["top_colour"] for m, s in scores.items()}, boots=boots)
    n = len(next(iter(scores.values()))["top_colour"])
    headline = {
        "metric": HEADLINE,
        "better": "lower",
        "num_images": n,
        "DDIM": tv["DDIM"],
        "W2SD": tv["W2SD"],
        "W2SD - DDIM": tv["W2SD - DDIM"],
    }
    metrics: dict[str, Any] = {}
    for name, values in (
        ("adherence", {m: s["adherence"] for m, s in scores.items()}),
        ("found", {m: (s["top_colour"] >= 0).astype(float) for m, s in scores.items()}),
    ):
        entry = {}
        for m, v in values.items():
            mean, ci = mean_ci(v)
            entry[m] = {"mean": mean, "ci95": ci}
        d, dci = mean_ci(values["W2SD"] - values["DDIM"])
        entry["W2SD - DDIM"] = {"mean": d, "ci95": dci}
        metrics[name] = entry
    distributions = {"truth": dict(zip(COLOUR_NAMES, TRUTH.tolist(), strict=True))}
    for m, s in scores.items():
        dist = colour_distribution(s["top_colour"])
        distributions[m] = dict(zip(COLOUR_NAMES, dist.tolist(), strict=True))
    return {"headline": headline, "metrics": metrics, "top_colour": distributions}


def table(result: dict[str, Any]) -> str:
    """The headline and the adherence table in Markdown."""
    h = result["headline"]

    def interval(e: dict[str, Any]) -> str:
        return f"{e['mean']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"

    lines = [
        "| metric | DDIM (49 UNet calls) | W2SD (49 UNet calls) | W2SD - DDIM |",
        "| --- | --- | --- | --- |",
        f"| {h['metric']} (lower is better) | "
        + " | ".join(interval(h[k]) for k in ("DDIM", "W2SD", "W2SD - DDIM"))
        + " |",
    ]
    for name, entry in result["metrics"].items():
        cells = [f"{entry[k]['mean']:.3f} ± {entry[k]['ci95']:.3f}" for k in entry]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    dist = result["top_colour"]
    lines.append("")
    lines.append("| top colour | " + " | ".join(COLOUR_NAMES) + " |")
    lines.append("| --- |" + " --- |" * len(COLOUR_NAMES))
    for who, d in dist.items():
        lines.append(f"| {who} | " + " | ".join(f"{d[c]:.3f}" for c in COLOUR_NAMES) + " |")
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """One line: what the headline's paired interval says."""
    h = result["headline"]
    d = h["W2SD - DDIM"]
    lo, hi = d["ci95"]
    if hi < 0:
        said = "W2SD is closer to the truth (the interval is below zero)"
    elif lo > 0:
        said = "W2SD is further from the truth (the interval is above zero)"
    else:
        said = "no clear difference (the interval includes zero)"
    return (
        f"headline ({h['num_images']} images per method): {h['metric']}, W2SD - DDIM = "
        f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {said}"
    )


def histogram(distributions: dict[str, dict[str, float]], lines: list[str]) -> Any:
    """Bars per colour: the truth (grey), then each method in the colour, side by side;
    `lines` of text above."""
    from PIL import Image, ImageDraw

    from .shapes.render import COLOURS

    who = list(distributions)
    w, h, margin = 506, 240, 24
    img = Image.new("RGB", (w, h), "white")
    pen = ImageDraw.Draw(img)
    lines = [*lines, "bars per colour: " + ", ".join(who) + " (grey: the truth, 0.25)"]
    for k, line in enumerate(lines):
        pen.text((6, 4 + 12 * k), line, fill="black")
    top_y = 8 + 12 * len(lines)
    base = h - margin
    plot_h = base - top_y
    group_w = (w - 20) / len(COLOUR_NAMES)
    bar_w = (group_w - 12) / len(who)
    peak = max(max(d.values()) for d in distributions.values()) * 1.05
    for g, colour in enumerate(COLOUR_NAMES):
        x0 = 10 + g * group_w
        for k, name in enumerate(who):
            x = x0 + k * bar_w
            fill = COLOURS[colour] if k else (200, 200, 200)
            y = base - plot_h * distributions[name][colour] / peak
            pen.rectangle([x, y, x + bar_w - 2, base], fill=fill, outline=(60, 60, 60))
            pen.text((x + 1, y - 11), name[0], fill="black")
        pen.text((x0 + 2, base + 4), colour, fill="black")
    pen.line([(8, base), (w - 8, base)], fill="black")
    return img


def picture(result: dict[str, Any], images: dict[str, np.ndarray], prompts: list[str]) -> Any:
    """The histogram above a few prompts side by side (DDIM | W2SD, same seeds)."""
    from PIL import Image

    runs = result["runs"]
    h = result["headline"]
    hist = histogram(
        result["top_colour"],
        [
            "top shape's colour for layout prompts ('a circle above a square'): truth uniform",
            f"distance to the truth (TV): DDIM {h['DDIM']['mean']:.3f}, W2SD "
            f"{h['W2SD']['mean']:.3f} ({h['num_images']} images each)",
        ],
    )
    side = grid(images, prompts, runs, rows=6)
    out = Image.new("RGB", (max(hist.width, side.width), hist.height + side.height), "white")
    out.paste(hist, (0, 0))
    out.paste(side, (0, hist.height))
    return out


def demo_minority(
    work: Path,
    num_images: int,
    log: Callable[[str], None],
    weak: str = "weak",
    models: Path | None = None,
    inversion: str | None = None,
) -> dict[str, Any]:
    """Run the experiment on one gap case; writes demo.png and minority/WEAK/results.json
    (WEAK-exact with exact inversion) under `work`, prints the table."""
    t0 = time.perf_counter()
    engine = minority_engine(work, weak, log, models)
    prompts, images = draw(engine, num_images, log, inversion=inversion)
    opts = EvalOptions(engine, prompts, num_images, inversion=inversion)
    scores = {m: score_layouts(imgs, prompts) for m, imgs in images.items()}
    result = {
        "experiment": "minority: layout prompts, top colour unsaid (truth: uniform)",
        "strong": {"model": "strong", "red_share": RED_SHARE["strong"]},
        "weak": {"model": weak, "red_share": RED_SHARE[weak], "case": GAP_CASES[weak]},
        "guidance": GUIDANCE,
        "runs": {
            m: {**r, "unet_calls": r["num_inference_steps"] + 2 * r["reflection_steps"]}
            for m, r in method_runs(opts).items()
        },
        **summarise(scores),
    }
    out = work / "minority" / (f"{weak}-{inversion}" if inversion else weak)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    png = work / "demo.png"
    picture(result, images, prompts).save(png)
    print(table(result))
    print(verdict(result))
    log(f"wrote {png} and {out / 'results.json'} in {time.perf_counter() - t0:.1f}s")
    return result


def choose_guidance(
    work: Path,
    candidates: list[float],
    num_images: int,
    log: Callable[[str], None],
    models: Path | None = None,
) -> list[dict[str, Any]]:
    """DDIM alone (the strong model) at each guidance on held-out seeds: TV to the truth
    and adherence."""
    engine = minority_engine(work, "strong", log, models)
    rows = []
    for g in candidates:
        prompts, images = draw(
            engine, num_images, log, seed=HELD_OUT_SEED, guidance=g, methods=("DDIM",)
        )
        s = score_layouts(images["DDIM"], prompts)
        tv = bootstrap_tv({"DDIM": s["top_colour"]})["DDIM"]
        adherence, ci = mean_ci(s["adherence"])
        rows.append(
            {
                "guidance": g,
                "num_images": num_images,
                "seeds_from": HELD_OUT_SEED,
                "tv": tv,
                "adherence": {"mean": adherence, "ci95": ci},
                "top_colour": colour_distribution(s["top_colour"]).tolist(),
            }
        )
        log(f"guidance {g}: TV {tv['mean']:.3f}, adherence {adherence:.3f} ± {ci:.3f}")
    return rows
