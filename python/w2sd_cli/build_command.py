"""``w2sd build``: an engine dir prepared for one backend."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="prepare an engine dir for a backend",
        description="Prepare backend artifacts in an engine dir. cpu: ONNX Runtime "
        "graph-optimised models, so that loading does no optimisation work. openvino: "
        "OpenVINO compiled-model cache for this CPU, bf16 where the CPU supports it. cuda: "
        "fp16 models. tensorrt: TensorRT engines.",
    )
    p.add_argument("engine_dir", help="engine dir made by `w2sd export`")
    p.add_argument(
        "--backend",
        default="cpu",
        help="backend to build: cpu, openvino, cuda, tensorrt (default: cpu)",
    )
    p.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=None,
        help="openvino only: bf16 (the default where the CPU has amx_bf16/avx512_bf16) or fp32",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="tensorrt only: the most images per request the engines take (their "
        "optimisation profiles end there; larger requests are refused; default 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from engines.build import build_engine

    build_engine(args.engine_dir, args.backend, precision=args.precision, max_batch=args.max_batch)
