"""``w2sd demo``: W2SD at work on the shipped trained pair, or the Gaussian-mixture study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import log


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="show W2SD at work on the shipped trained pair (no download)",
        description="The embedded default: the trained shapes text-to-image pair shipped with "
        "the package (strong = the trained model, weak = an early checkpoint) is exported and "
        "built once into --workdir (needs torch), then --num-images images are drawn with "
        "plain DDIM (49 steps) and with W2SD (T=25, lambda=12: the same 49 UNet calls) from "
        "the same seeds and scored for prompt adherence; writes demo.png (side by side) and "
        "prints the figures. --gmm runs the paper's Gaussian-mixture study instead.",
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
    p.add_argument("--num-images", type=int, default=100, help="images per method (default 100)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from w2sd_studies.demos import demo_gmm, demo_shapes

    t0 = time.perf_counter()
    work = Path(args.workdir)
    if args.gmm:
        log(f"demo --gmm: exact Gaussian-mixture denoisers through the runtime, in {work / 'gmm'}")
        demo_gmm(work / "gmm", args.samples, log)
    else:
        log(
            "demo: the shipped shapes pair (trained strong model, early-checkpoint weak model), "
            f"plain DDIM vs W2SD on {args.num_images} images, in {work}"
        )
        demo_shapes(work, args.num_images, log)
    log(f"demo finished in {time.perf_counter() - t0:.1f}s")
