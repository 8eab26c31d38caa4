"""``w2sd bench``: latency against side-by-side peers (../shared/PERF-PROTOCOL.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import log


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="latency benchmark with side-by-side baselines (../shared/PERF-PROTOCOL.md)",
        description="Benchmark an engine dir, or a named workload built locally and cached "
        "(tiny, sd15-256, gpu-sd15-512, gpu-sdxl-1024, sdxl-arch), against its peers run "
        "interleaved: the diffusers reference (and, on a GPU, diffusers' own fp16 pipeline, "
        "plain and compiled), a plain Python ONNX Runtime loop and plain DDIM with T + 2λ "
        "UNet calls. Each configuration runs in its own process; times are medians after "
        "warm-up. With --backend cuda or tensorrt the diffusers systems run on the GPU and "
        "peak GPU memory is reported.",
    )
    p.add_argument("engine_dir", nargs="?", default=None, help="engine dir (or use --workload)")
    p.add_argument(
        "--workload",
        default=None,
        help="named workload: tiny, sd15-256 (CPU), gpu-sd15-512 (the protocol's GPU "
        "workload: 512², T=25, λ=12), gpu-sdxl-1024 (SDXL at 1024², T=25, λ=12) or sdxl-arch "
        "(about 14 GB per copy)",
    )
    p.add_argument("--steps", type=int, default=None, help="T (default: the workload's/engine's)")
    p.add_argument("--reflection-steps", type=int, default=None, help="λ (default: likewise)")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved rounds: each runs every system once, after its warm-up (default 3)",
    )
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs (default 1)")
    p.add_argument(
        "--baselines",
        default=None,
        help="comma-separated: diffusers (the reference loop, fp32), diffusers-bf16 "
        "(torch.autocast bf16 on CPU), diffusers-pipeline (diffusers' own pipeline in fp16 "
        "with DDIM at T + 2λ steps), diffusers-compile (the same, UNet under torch.compile), "
        "ort-python, ov-python (the same plain loop on OpenVINO's Python API and the "
        "engine's openvino build), ddim (default on a CPU: diffusers, diffusers-bf16 where the "
        "CPU has amx_bf16/avx512_bf16, ort-python, ov-python for --backend openvino, ddim; "
        "on a GPU backend: diffusers, "
        "diffusers-pipeline, diffusers-compile, ort-python, ddim; '' for none); by name "
        "only: static-shapes (backend openvino with static-shape UNet models), warm-up (the "
        "runtime warmed up after loading, as w2sd serve does)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="concurrent requests for the throughput figure (default 2; 1 skips it)",
    )
    p.add_argument("--threads", type=int, default=None, help="runtime intra-op threads")
    p.add_argument("--backend", default="cpu", help="runtime backend (default: cpu)")
    p.add_argument(
        "--cache-dir", default=None, help="where workloads are built (default: ~/.cache/w2sd/bench)"
    )
    p.add_argument("--json", default=None, help="write the result object to this file")
    p.add_argument("--chart", default=None, help="write a per-stage PNG chart to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from w2sd_bench.report import chart, table
    from w2sd_bench.runner import BenchOptions, default_cache_dir, run_bench

    result = run_bench(
        BenchOptions(
            engine_dir=Path(args.engine_dir) if args.engine_dir else None,
            workload=args.workload,
            steps=args.steps,
            reflection_steps=args.reflection_steps,
            repeat=args.repeat,
            warmup=args.warmup,
            baselines=None
            if args.baselines is None
            else tuple(b for b in args.baselines.split(",") if b),
            concurrency=args.concurrency,
            threads=args.threads,
            backend=args.backend,
            cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        )
    )
    print(table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {out}")
    if args.chart:
        chart(result, Path(args.chart))
        log(f"wrote {args.chart}")
