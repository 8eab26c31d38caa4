"""``w2sd sample``: one image from a built engine dir, written as PNG."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_sample_args, run_sample


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="generate an image with W2SD",
        description="Generate one image from a built engine dir and write it as PNG.",
    )
    p.add_argument("engine_dir", help="engine dir built for --backend")
    p.add_argument("prompt", help="text prompt")
    add_sample_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    run_sample(args.engine_dir, args.prompt, args)
