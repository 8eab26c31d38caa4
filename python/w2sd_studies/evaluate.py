"""``w2sd eval ENGINE --prompts FILE --num-images N``: prompt adherence of plain DDIM vs W2SD
at the same UNet-call budget (the paper's time-matched setting: DDIM with T + 2 lambda steps
against W2SD with T steps and lambda reflections), scored by a pluggable scorer.

Image i uses prompt i mod len(prompts) and the runtime's initial latents for seed
``seed + i``, for both methods: the comparison is paired. Each metric is reported as a
mean with a 95% confidence interval (normal approximation), and the W2SD - DDIM difference
with the paired interval.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from w2sd.errors import InvalidArgumentError
from w2sd.latents import initial_latents

DEFAULT_SCORER = "w2sd_studies.shapes.scorer:score_images"
Z95 = 1.959964

Scorer = Callable[[np.ndarray, Sequence[str]], Any]


def load_scorer(spec: str) -> Scorer:
    """'module:function' -> the function; it takes uint8 images (N, H, W, 3) and their
    prompts and returns per-image scores: an array (one metric) or a dict of arrays."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise InvalidArgumentError(
            f"--scorer: expected 'module:function', got {spec!r}", param="scorer"
        )
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise InvalidArgumentError(f"--scorer: cannot load {spec!r}: {e}", param="scorer") from None
    if not callable(fn):
        raise InvalidArgumentError(f"--scorer: {spec!r} is not callable", param="scorer")
    return fn  # type: ignore[no-any-return]


def _as_metrics(scores: Any, n: int) -> dict[str, np.ndarray]:
    table = scores if isinstance(scores, dict) else {"score": scores}
    out = {}
    for name, values in table.items():
        arr = np.asarray(values, np.float64)
        if arr.shape != (n,) or not np.isfinite(arr).all():
            raise InvalidArgumentError(
                f"scorer metric {name!r}: expected {n} finite scores, got shape {arr.shape}",
                param="scorer",
            )
        out[str(name)] = arr
    return out


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval."""
    n = len(values)
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else float("inf")
    return float(values.mean()), half


@dataclass
class EvalOptions:
    engine_dir: Path
    prompts: list[str]
    num_images: int
    steps: int = 25
    reflection_steps: int = 12
    ddim_steps: int | None = None  # None: steps + 2 * reflection_steps (same UNet calls)
    inversion: str | None = None
    backend: str = "cpu"
    threads: int | None = None
    batch: int = 50
    seed: int = 0
    scorer: str = DEFAULT_SCORER
    grid_rows: int = 8
    out_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)  # more SampleRequest fields


def generate(
    rt: Any, opts: EvalOptions, run: dict[str, Any], label: str, log: Callable[[str], None]
) -> np.ndarray:
    spec = rt.manifest.spec
    f, c = spec.vae_scale_factor, spec.latent_channels
    h, w = spec.image.default_height // f, spec.image.default_width // f
    images = []
    t0 = time.perf_counter()
    for start in range(0, opts.num_images, opts.batch):
        idx = range(start, min(start + opts.batch, opts.num_images))
        prompts = [opts.prompts[i % len(opts.prompts)] for i in idx]
        latents = np.concatenate([initial_latents(opts.seed + i, (1, c, h, w)) for i in idx])
        images.append(
            rt.sample(prompt=prompts, latents=latents, output_type="np", **opts.options, **run)
        )
        done = start + len(idx)
        log(f"eval {label}: {done}/{opts.num_images} images ({time.perf_counter() - t0:.0f}s)")
    return np.concatenate(images)


def method_runs(opts: EvalOptions) -> dict[str, dict[str, Any]]:
    """The two methods at the same UNet-call budget: DDIM at T + 2 lambda steps (unless
    asked otherwise) and W2SD at T steps with lambda reflections."""
    ddim_steps = opts.ddim_steps or opts.steps + 2 * opts.reflection_steps
    return {
        "DDIM": {"num_inference_steps": ddim_steps, "reflection_steps": 0},
        "W2SD": {
            "num_inference_steps": opts.steps,
            "reflection_steps": opts.reflection_steps,
            **({"inversion": opts.inversion} if opts.inversion else {}),
        },
    }


def evaluate(opts: EvalOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate with both methods, score, and write results.json / grid.png in out_dir."""
    from w2sd.runtime import W2SDRuntime

    if opts.num_images < 2:
        raise InvalidArgumentError("--num-images must be at least 2", param="num_images")
    if not opts.prompts:
        raise InvalidArgumentError("--prompts: the file holds no prompts", param="prompts")
    scorer = load_scorer(opts.scorer)
    rt = W2SDRuntime(opts.engine_dir, backend=opts.backend, threads=opts.threads)
    if rt.manifest.spec.image is None:
        raise InvalidArgumentError("eval scores images: this engine has no VAE decoder")
    runs = method_runs(opts)
    prompts = [opts.prompts[i % len(opts.prompts)] for i in range(opts.num_images)]
    images, metrics = {}, {}
    for label, run in runs.items():
        images[label] = generate(rt, opts, run, label, log)
        metrics[label] = _as_metrics(scorer(images[label], prompts), opts.num_images)
    names = list(metrics["DDIM"])
    result: dict[str, Any] = {
        "engine": str(opts.engine_dir),
        "num_images": opts.num_images,
        "num_prompts": len(opts.prompts),
        "scorer": opts.scorer,
        "runs": {
            label: {**run, "unet_calls": run["num_inference_steps"] + 2 * run["reflection_steps"]}
            for label, run in runs.items()
        },
        "options": dict(opts.options),
        "guidance": {r: rt.manifest.spec.role(r).guidance for r in ("strong", "weak", "denoiser")},
        "metrics": {},
    }
    for name in names:
        entry = {}
        for label in runs:
            m, ci = mean_ci(metrics[label][name])
            entry[label] = {"mean": m, "ci95": ci}
        d, dci = mean_ci(metrics["W2SD"][name] - metrics["DDIM"][name])
        entry["W2SD - DDIM"] = {"mean": d, "ci95": dci}
        result["metrics"][name] = entry
    if opts.out_dir is not None:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        (opts.out_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        grid(images, prompts, runs, opts.grid_rows).save(opts.out_dir / "grid.png")
    return result


def table(result: dict[str, Any]) -> str:
    runs = result["runs"]
    head = [f"{k} ({v['unet_calls']} UNet calls)" for k, v in runs.items()]
    lines = [
        f"| metric | {' | '.join(head)} | W2SD - DDIM |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in result["metrics"].items():
        cells = [f"{entry[k]['mean']:.3f} ± {entry[k]['ci95']:.3f}" for k in (*runs, "W2SD - DDIM")]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def grid(images: dict[str, np.ndarray], prompts: list[str], runs: dict[str, Any], rows: int) -> Any:
    """Side by side, same seeds: one row per image, a column per method, 4x upscaled."""
    from PIL import Image, ImageDraw

    scale, label_h = 4, 14
    labels = list(images)
    h, w = images[labels[0]].shape[1:3]
    cell_w, cell_h = w * scale, h * scale
    text_w = 250
    rows = min(rows, len(prompts))
    out = Image.new("RGB", (text_w + cell_w * len(labels), label_h + rows * cell_h), "white")
    draw = ImageDraw.Draw(out)
    for j, label in enumerate(labels):
        run = runs[label]
        name = f"{label} T={run['num_inference_steps']}" + (
            f" lambda={run['reflection_steps']}" if run["reflection_steps"] else ""
        )
        draw.text((text_w + j * cell_w + 4, 1), name, fill="black")
        for i in range(rows):
            tile = Image.fromarray(images[label][i]).resize((cell_w, cell_h), Image.NEAREST)
            out.paste(tile, (text_w + j * cell_w, label_h + i * cell_h))
    for i in range(rows):
        draw.text((4, label_h + i * cell_h + cell_h // 2 - 6), prompts[i], fill="black")
    return out
