"""``w2sd eval``: prompt adherence, plain DDIM vs W2SD at the same UNet-call budget."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from w2sd.errors import InvalidArgumentError

from .common import log


def add_parser(sub: Any) -> None:
    from w2sd_studies.evaluate import DEFAULT_SCORER

    p = sub.add_parser(
        "eval",
        help="prompt adherence: plain DDIM vs W2SD at the same UNet-call budget",
        description="Generate --num-images images with plain DDIM (T + 2*lambda steps) and "
        "with W2SD (T steps, lambda reflections), from the same initial latents, score "
        "each with --scorer, and report every metric's mean with its 95%% confidence "
        "interval and the paired W2SD - DDIM difference. Writes results.json and grid.png "
        "(side by side, same seeds) to --out.",
    )
    p.add_argument("engine_dir", help="engine dir (built for --backend)")
    p.add_argument("--prompts", required=True, help="text file, one prompt per line (cycled)")
    p.add_argument("--num-images", type=int, default=500, help="images per method (default 500)")
    p.add_argument("--steps", type=int, default=25, help="W2SD steps T (default 25)")
    p.add_argument(
        "--reflection-steps", type=int, default=12, help="W2SD reflection steps lambda (default 12)"
    )
    p.add_argument(
        "--ddim-steps",
        type=int,
        default=None,
        help="plain DDIM steps (default T + 2*lambda: the same number of UNet calls)",
    )
    p.add_argument("--inversion", choices=("official", "exact"), default=None)
    for role in ("strong", "weak", "denoiser"):
        p.add_argument(f"--{role}-guidance", type=float, default=None)
    p.add_argument(
        "--scorer",
        default=DEFAULT_SCORER,
        help="module:function taking (uint8 images (N, H, W, 3), prompts) and returning "
        f"per-image scores, an array or a dict of arrays (default: {DEFAULT_SCORER}, the "
        "shapes world's rule-based adherence)",
    )
    p.add_argument("--batch", type=int, default=50, help="images per runtime call (default 50)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED + i (default 0)")
    p.add_argument("--out", default="w2sd-eval", help="output dir (default ./w2sd-eval)")
    p.add_argument("--backend", default="cpu", help="inference backend (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from w2sd_studies.evaluate import EvalOptions, evaluate, table

    try:
        text = Path(args.prompts).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgumentError(f"--prompts: cannot read {args.prompts!r}: {e}") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    options = {
        f"{r}_guidance": getattr(args, f"{r}_guidance")
        for r in ("strong", "weak", "denoiser")
        if getattr(args, f"{r}_guidance") is not None
    }
    result = evaluate(
        EvalOptions(
            engine_dir=Path(args.engine_dir),
            prompts=prompts,
            num_images=args.num_images,
            steps=args.steps,
            reflection_steps=args.reflection_steps,
            ddim_steps=args.ddim_steps,
            inversion=args.inversion,
            backend=args.backend,
            threads=args.threads,
            batch=args.batch,
            seed=args.seed,
            scorer=args.scorer,
            out_dir=Path(args.out),
            options=options,
        ),
        log=log,
    )
    print(table(result))
    log(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'grid.png'}")
