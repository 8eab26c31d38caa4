"""The ``w2sd`` command: export, build, sample, serve, demo, bench, info."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, W2SDError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ProgressBar:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label = label
        self.width = width
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> bool:
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        line = f"{self.label} [{bar}] {done}/{total} steps {elapsed:.1f}s"
        if self.tty:
            end = "\n" if done == total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
        return True


def _reflection_arg(text: str) -> int | tuple[int, ...]:
    from .request import parse_reflection

    try:
        return parse_reflection(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _request_fields() -> list[Any]:
    """SampleRequest's fields that have a command-line flag (their metadata says how)."""
    from dataclasses import fields

    from .request import SampleRequest

    found = []
    for f in fields(SampleRequest):
        if f.metadata.get("flag"):
            found.append(f)
    return found


def _add_sample_args(p: argparse.ArgumentParser) -> None:
    from .request import parse_reflection

    for f in _request_fields():
        meta = dict(f.metadata)
        flag = meta.pop("flag")
        if meta.get("type") is parse_reflection:
            meta["type"] = _reflection_arg
        p.add_argument(flag, dest=f.name, default=None, **meta)
    p.add_argument("--backend", default="cpu", help="inference backend (default: cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: one per physical core)",
    )
    p.add_argument(
        "--no-memory-arena",
        action="store_true",
        help="turn off ONNX Runtime's CPU memory arena: a lower peak for big images "
        "(SDXL at 1024 px), at some speed",
    )
    p.add_argument("-o", "--output", default="out.png", help="output PNG path")


def _run_sample(engine_dir: str, prompt: str, args: argparse.Namespace) -> Path:
    from .request import SampleRequest
    from .runtime import W2SDRuntime

    request = SampleRequest(
        prompt=prompt,
        callback=ProgressBar("sampling"),
        **{f.name: getattr(args, f.name) for f in _request_fields()},
    )
    t0 = time.perf_counter()
    rt = W2SDRuntime(
        engine_dir,
        backend=args.backend,
        threads=args.threads,
        memory_arena=not args.no_memory_arena,
    )
    t_load = time.perf_counter() - t0
    image = rt.sample(request)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    s = rt.last_stats
    _log(
        f"wrote {out} ({image.width}x{image.height}, seed {s['seed']}) | load {t_load:.2f}s, "
        f"text {s['text_encode_s']:.3f}s, loop {s['loop_s']:.3f}s ({s['unet_calls']} UNet calls), "
        f"VAE {s['vae_decode_s']:.3f}s, total {s['e2e_s']:.3f}s"
    )
    return out


def _export_onnx(args: argparse.Namespace) -> None:
    """`w2sd export --strong-onnx S --weak-onnx W --scheduler-config F`: plain denoisers."""
    from .export.onnx_denoiser import OnnxExportOptions, export_onnx_engine

    diffusers_only = [
        f"--{name.replace('_', '-')}"
        for name in ("strong", "weak", "denoiser", "strong_lora", "weak_lora", "denoiser_lora")
        if getattr(args, name) is not None
    ]
    if diffusers_only:
        raise InvalidArgumentError(
            f"{', '.join(diffusers_only)}: give diffusers folders or ONNX denoisers, not both"
        )
    missing = [
        f"--{n.replace('_', '-')}"
        for n in ("strong_onnx", "weak_onnx", "scheduler_config")
        if getattr(args, n) is None
    ]
    if missing:
        raise InvalidArgumentError(f"ONNX denoiser export needs {', '.join(missing)}")
    export_onnx_engine(
        OnnxExportOptions(
            strong=Path(args.strong_onnx),
            weak=Path(args.weak_onnx),
            denoiser=Path(args.denoiser_onnx) if args.denoiser_onnx else None,
            scheduler_config=Path(args.scheduler_config),
            out=Path(args.out),
            num_inference_steps=args.steps,
            reflection_steps=args.reflection_steps,
            inversion=args.inversion,
            force=args.force,
        )
    )


def cmd_export(args: argparse.Namespace) -> None:
    from .export.engine_export import ExportOptions, export_engine
    from .lora import LoraSpec

    if args.strong_onnx or args.weak_onnx or args.denoiser_onnx or args.scheduler_config:
        _export_onnx(args)
        return
    if args.strong is None or args.weak is None:
        raise InvalidArgumentError(
            "export needs --strong and --weak (diffusers folders), or --strong-onnx, "
            "--weak-onnx and --scheduler-config (ONNX denoisers)"
        )

    loras = {
        role: None if text is None else LoraSpec.parse(text, f"--{role}-lora")
        for role, text in (
            ("strong", args.strong_lora),
            ("weak", args.weak_lora),
            ("denoiser", args.denoiser_lora),
        )
    }

    export_engine(
        ExportOptions(
            strong=Path(args.strong),
            weak=Path(args.weak),
            denoiser=Path(args.denoiser) if args.denoiser else None,
            out=Path(args.out),
            strong_lora=loras["strong"],
            weak_lora=loras["weak"],
            denoiser_lora=loras["denoiser"],
            strong_guidance=args.strong_guidance,
            weak_guidance=args.weak_guidance,
            denoiser_guidance=args.denoiser_guidance,
            num_inference_steps=args.steps,
            reflection_steps=args.reflection_steps,
            inversion=args.inversion,
            lora_mode=args.lora_mode,
            min_size=args.min_size,
            max_size=args.max_size,
            force=args.force,
            verify=not args.no_verify,
        )
    )


def cmd_build(args: argparse.Namespace) -> None:
    from .engines.build import build_engine

    build_engine(args.engine_dir, args.backend, precision=args.precision, max_batch=args.max_batch)


def cmd_sample(args: argparse.Namespace) -> None:
    _run_sample(args.engine_dir, args.prompt, args)


def cmd_info(args: argparse.Namespace) -> None:
    import json

    from .backends import backend_status
    from .manifest import load_manifest
    from .ort_library import openvino_library

    if args.backends or args.engine_dir is None:
        # The OpenVINO build of ONNX Runtime (where setup installed it) runs every CPU backend:
        # the library a process asking for 'openvino' would load.
        for status in backend_status("openvino" if openvino_library() else None):
            state = "available" if status.available else f"not available: {status.reason}"
            print(f"{status.name:9s} {state}")
        if args.engine_dir is None:
            return
    spec = load_manifest(args.engine_dir).spec
    info: dict[str, Any] = {
        "family": spec.family,
        "unets": [u.roles for u in spec.unets],
        "text_encoders": [] if spec.text is None else [e.source for e in spec.text.encoders],
        "roles": {r: v.model_dump() for r, v in spec.roles.items()},
        "defaults": spec.defaults.model_dump(),
        "image": None if spec.image is None else spec.image.model_dump(),
        "denoiser": None if spec.denoiser is None else spec.denoiser.model_dump(),
        "prediction_type": spec.scheduler.prediction_type,
        "built_backends": sorted(spec.backends),
    }
    print(json.dumps(info, indent=1))


def cmd_bench(args: argparse.Namespace) -> None:
    import json

    from .bench.report import chart, table
    from .bench.runner import BenchOptions, default_cache_dir, run_bench

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
        _log(f"wrote {out}")
    if args.chart:
        chart(result, Path(args.chart))
        _log(f"wrote {args.chart}")


def cmd_serve(args: argparse.Namespace) -> None:
    from .errors import InvalidArgumentError
    from .serve.schema import Limits
    from .serve.server import ServeOptions, serve
    from .serve.service import ServiceSettings

    for name in ("lanes", "max_batch", "max_n", "max_prompt_chars", "max_body_bytes", "replicas"):
        if getattr(args, name) < 1:
            raise InvalidArgumentError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_queue < 0 or args.request_timeout <= 0:
        raise InvalidArgumentError("--max-queue must be >= 0 and --request-timeout > 0")
    opts = ServeOptions(
        engine_dir=args.engine_dir,
        host=args.host,
        port=args.port,
        backend=args.backend,
        threads=args.threads,
        service=ServiceSettings(
            lanes=args.lanes,
            max_queue=args.max_queue,
            request_timeout=args.request_timeout,
            max_batch=args.max_batch,
        ),
        limits=Limits(
            max_n=args.max_n,
            max_prompt_chars=args.max_prompt_chars,
            max_body_bytes=args.max_body_bytes,
        ),
        api_key=args.api_key,
        grace=args.grace,
    )
    if args.ray:
        from .serve.ray_app import serve_ray

        serve_ray(opts, args.replicas, args.ray_address)
    else:
        serve(opts)


def cmd_demo(args: argparse.Namespace) -> None:
    from .demos import demo_gmm, demo_shapes

    t0 = time.perf_counter()
    work = Path(args.workdir)
    if args.gmm:
        _log(f"demo --gmm: exact Gaussian-mixture denoisers through the runtime, in {work / 'gmm'}")
        demo_gmm(work / "gmm", args.samples, _log)
    else:
        _log(
            "demo: the shipped shapes pair (trained strong model, early-checkpoint weak model), "
            f"plain DDIM vs W2SD on {args.num_images} images, in {work}"
        )
        demo_shapes(work, args.num_images, _log)
    _log(f"demo finished in {time.perf_counter() - t0:.1f}s")


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import EvalOptions, evaluate, table

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
        log=_log,
    )
    print(table(result))
    _log(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'grid.png'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w2sd",
        description="Weak-to-Strong Diffusion with Reflection (W2SD): export diffusers models to "
        "an engine dir, build it for a backend, and sample from it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export",
        help="export strong/weak diffusers pipelines (or ONNX denoisers) to an engine dir "
        "(needs torch)",
        description="Export the strong and weak (and optional denoiser) diffusers pipeline "
        "folders to ONNX, with a manifest, into a new engine dir. Each role keeps its own "
        "UNet and text encoder(s) (identical ones are stored once); the VAE and scheduler "
        "come from the strong pipeline. Or, with --strong-onnx/--weak-onnx and "
        "--scheduler-config, make an engine dir from plain ONNX denoisers (any epsilon- or "
        "v-prediction model: inputs sample (B, C, H, W) and timestep (1,) or (B,), float32; "
        "one output of the sample's shape); such engines sample latents you give them.",
    )
    p.add_argument("--strong", default=None, help="diffusers folder of the strong model")
    p.add_argument("--weak", default=None, help="diffusers folder of the weak model")
    p.add_argument(
        "--denoiser",
        default=None,
        help="diffusers folder of the denoiser model (default: the strong one)",
    )
    p.add_argument("--out", required=True, help="engine dir to create")
    for role in ("strong", "weak", "denoiser"):
        p.add_argument(
            f"--{role}-onnx",
            default=None,
            metavar="MODEL.onnx",
            help=f"plain ONNX denoiser for the {role} role (instead of --{role})"
            + (" (default: the strong one)" if role == "denoiser" else ""),
        )
    p.add_argument(
        "--scheduler-config",
        default=None,
        metavar="JSON",
        help="diffusers DDIMScheduler config file for ONNX denoisers (num_train_timesteps, "
        "betas, prediction_type, ...)",
    )
    for role in ("strong", "weak", "denoiser"):
        p.add_argument(
            f"--{role}-lora",
            default=None,
            metavar="FILE:SCALE",
            help=f"LoRA (.safetensors; diffusers/peft or kohya keys) for the {role} UNet at "
            f"SCALE, e.g. lora.safetensors:-1.5 (LoRA gap; see --lora-mode)",
        )
    p.add_argument(
        "--lora-mode",
        choices=("input", "fused"),
        default="input",
        help="input (default): one UNet artifact per base model and LoRA file, the LoRA "
        "unfused and its scale a model input, so every role (and every request: "
        "--strong-lora-scale etc. at sampling time) picks its own scale; fused: the LoRA "
        "fused into one artifact per scale (no branch cost, a UNet copy per scale)",
    )
    p.add_argument(
        "--strong-guidance",
        type=float,
        default=7.5,
        help="default guidance of the strong role (default: 7.5)",
    )
    p.add_argument(
        "--weak-guidance",
        type=float,
        default=None,
        help="default guidance of the weak role (default: strong's if the UNets differ, else 1.0)",
    )
    p.add_argument(
        "--denoiser-guidance",
        type=float,
        default=None,
        help="default guidance of the denoiser role (default: strong's)",
    )
    p.add_argument("--steps", type=int, default=25, help="default number of steps (default 25)")
    p.add_argument(
        "--reflection-steps",
        type=int,
        default=12,
        help="default reflection steps lambda (default 12)",
    )
    p.add_argument(
        "--inversion",
        choices=("official", "exact"),
        default="official",
        help="default inversion mode (default: official)",
    )
    p.add_argument("--min-size", type=int, default=None, help="smallest height/width allowed")
    p.add_argument("--max-size", type=int, default=None, help="largest height/width allowed")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip checking each ONNX model against its PyTorch module",
    )
    p.set_defaults(func=cmd_export)

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
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "sample",
        help="generate an image with W2SD",
        description="Generate one image from a built engine dir and write it as PNG.",
    )
    p.add_argument("engine_dir", help="engine dir built for --backend")
    p.add_argument("prompt", help="text prompt")
    _add_sample_args(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "serve",
        help="serve an engine over HTTP (OpenAI Images API compatible); --ray for Ray Serve",
        description="Load the engine once and serve POST /v1/images/generations (OpenAI "
        'Images API shape plus W2SD fields; "stream": true for Server-Sent Events), '
        "GET /health, /ready and /metrics (Prometheus). Requests run on --lanes; at most "
        "--max-queue more wait, the rest get 429. SIGTERM drains in-flight requests.",
    )
    p.add_argument("engine_dir", help="engine dir built for --backend")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--backend", default="cpu", help="inference backend (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per session")
    p.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="requests running at once (default 1: on a CPU one request already uses every "
        "core; on a GPU 2-4 overlap one request's work with another's)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="merge requests that differ only in prompt and seed into batches of up to N "
        "images while the lanes are busy (default 1: off; results may then differ in the "
        "last bits from an unbatched run)",
    )
    p.add_argument(
        "--max-queue", type=int, default=8, help="requests waiting beyond the lanes (default 8)"
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=300.0,
        help="seconds from admission to result; later requests are cancelled (504)",
    )
    p.add_argument("--max-n", type=int, default=4, help="largest n (images per request)")
    p.add_argument("--max-prompt-chars", type=int, default=2000, help="longest prompt")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body")
    p.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/ routes"
    )
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds in-flight requests get after SIGTERM"
    )
    p.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (with --ray)")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (with --ray; default: local)"
    )
    p.set_defaults(func=cmd_serve)

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
    p.set_defaults(func=cmd_demo)

    from .evaluate import DEFAULT_SCORER

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
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "bench",
        help="latency benchmark with side-by-side baselines (../shared/PERF-PROTOCOL.md)",
        description="Benchmark an engine dir, or a named workload built locally and cached "
        "(tiny, sd15-256, gpu-sd15-512, sdxl-arch), against the diffusers reference, a "
        "plain Python ONNX Runtime loop and plain DDIM with T + 2λ UNet calls. Each "
        "configuration runs in its own process; times are medians after warm-up. With "
        "--backend cuda or tensorrt the diffusers baselines run on the GPU and peak GPU "
        "memory is reported.",
    )
    p.add_argument("engine_dir", nargs="?", default=None, help="engine dir (or use --workload)")
    p.add_argument(
        "--workload",
        default=None,
        help="named workload: tiny, sd15-256 (CPU), gpu-sd15-512 (the protocol's GPU "
        "workload: 512², T=25, λ=12) or sdxl-arch (about 14 GB per copy)",
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
        help="comma-separated: diffusers (fp32), diffusers-bf16 (torch.autocast bf16 on "
        "CPU; fp16 on a GPU backend), ort-python, ddim (default: all, except "
        "diffusers-bf16 on a CPU without amx_bf16/avx512_bf16, where torch emulates bf16; "
        "'' for none)",
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
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "info",
        help="show an engine dir's manifest summary, or which backends this machine runs",
        description="Summarise an engine dir's manifest. With --backends (or no ENGINE_DIR), "
        "list every backend with whether this machine can run it and, if not, why.",
    )
    p.add_argument("engine_dir", nargs="?", default=None, help="engine dir (optional)")
    p.add_argument(
        "--backends", action="store_true", help="list backends and why each is (not) available"
    )
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except W2SDError as e:
        _log(f"w2sd {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _log(f"w2sd {args.command}: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
