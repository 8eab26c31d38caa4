"""``w2sd demo``: W2SD at work on the shipped trained models (the minority experiment), or
the Gaussian-mixture study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import log

# The shipped weak models (w2sd_studies.shapes.minority.GAP_CASES; the studies room is
# imported only when the demo runs).
WEAK_MODELS = ("weak", "weak-same", "weak-opposite")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="show W2SD at work on the shipped trained models (no download)",
        description="The embedded default, the paper's minority experiment in the shapes "
        "world: prompts that name two shapes but no colours ('a circle above a square'), "
        "whose true top colour is uniform; a strong model fine-tuned on data that favours "
        "red on top (0.40 instead of 0.25) and a weak one that continued on data favouring "
        "it more (0.75). Both are exported and built once into --workdir (needs torch), then "
        "--num-images images are drawn with plain DDIM (49 steps) and with W2SD (T=25, "
        "lambda=12: the same 49 UNet calls) from the same seeds. Prints how far each "
        "method's top colours are from the truth (total variation, bootstrap 95%% "
        "intervals) with layout adherence beside it; writes demo.png (the histogram and "
        "images side by side) and minority/WEAK/results.json. --weak picks the control "
        "cases; --gmm runs the Gaussian-mixture study instead.",
    )
    p.add_argument(
        "--workdir",
        default="w2sd-demo",
        help="where models and the engine dir go (default: ./w2sd-demo)",
    )
    p.add_argument(
        "--gmm",
        action="store_true",
        help="the paper's Gaussian-mixture result instead: exact mixture denoisers exported "
        "as ONNX and sampled by the runtime (DDIM vs W2SD, gap > 0, = 0, < 0), checked "
        "against numpy; writes gmm.png, gmm.md and gmm.json under --workdir/gmm",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=20000,
        help="samples per figure for --gmm (default 20000)",
    )
    p.add_argument(
        "--num-images",
        type=int,
        default=400,
        help="images per method (default 400, about a minute on 2 vCPUs; the README's "
        "figures use 1000)",
    )
    p.add_argument(
        "--weak",
        choices=WEAK_MODELS,
        default="weak",
        help="the weak model: weak (continued on data with red at 0.75: gap > 0, the "
        "paper's condition; default), weak-same (0.40, as the strong model's: gap ~ 0) or "
        "weak-opposite (0.10: gap < 0)",
    )
    p.add_argument(
        "--inversion",
        choices=("official", "exact"),
        default=None,
        help="W2SD's inversion: official (the authors' timestep, default) or exact (textbook "
        "DDIM inversion); results go to minority/WEAK-exact/ for exact",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from w2sd.errors import InvalidArgumentError
    from w2sd_studies.demos import demo_gmm
    from w2sd_studies.minority_study import demo_minority
    from w2sd_studies.shapes.minority import GAP_CASES

    t0 = time.perf_counter()
    work = Path(args.workdir)
    if args.gmm:
        log(f"demo --gmm: exact Gaussian-mixture denoisers through the runtime, in {work / 'gmm'}")
        demo_gmm(work / "gmm", args.samples, log)
    else:
        if args.num_images < 2:
            raise InvalidArgumentError("--num-images must be at least 2", param="num_images")
        log(
            f"demo: the minority experiment, strong vs {args.weak} ({GAP_CASES[args.weak]}), "
            f"plain DDIM vs W2SD on {args.num_images} images each, in {work}"
        )
        demo_minority(work, args.num_images, log, weak=args.weak, inversion=args.inversion)
    log(f"demo finished in {time.perf_counter() - t0:.1f}s")
