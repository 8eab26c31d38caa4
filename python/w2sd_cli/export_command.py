"""``w2sd export``: diffusers pipelines (or plain ONNX denoisers) to a verified engine dir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from w2sd.errors import InvalidArgumentError


def add_parser(sub: Any) -> None:
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
    _source_args(p)
    _onnx_denoiser_args(p)
    _lora_args(p)
    _default_args(p)
    p.set_defaults(func=run)


def _source_args(p: argparse.ArgumentParser) -> None:
    """Each role's diffusers folder or single file, how it is stored, and --out."""
    p.add_argument(
        "--strong",
        default=None,
        help="the strong model: a diffusers folder (fp32/fp16/bf16, variant files, "
        ".safetensors or .bin, sharded) or a single-file .safetensors checkpoint",
    )
    p.add_argument("--weak", default=None, help="the weak model (as --strong)")
    p.add_argument(
        "--denoiser",
        default=None,
        help="the denoiser model (as --strong; default: the strong one)",
    )
    for role in ("strong", "weak", "denoiser"):
        p.add_argument(
            f"--{role}-config",
            default=None,
            metavar="FOLDER",
            help=f"local diffusers folder whose configs, tokenizers and scheduler describe a "
            f"single-file --{role} (its weights are not read)"
            + ("" if role == "strong" else "; default: the strong model's config folder"),
        )
    p.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="load the NAME weights variant (e.g. fp16: diffusion_pytorch_model.fp16."
        "safetensors) where a folder has it; a folder holding only one variant uses it",
    )
    p.add_argument("--out", required=True, help="engine dir to create")


def _onnx_denoiser_args(p: argparse.ArgumentParser) -> None:
    """Plain ONNX denoisers instead of diffusers pipelines."""
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


def _lora_args(p: argparse.ArgumentParser) -> None:
    """LoRA per role, fused or a model input."""
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


def _default_args(p: argparse.ArgumentParser) -> None:
    """The engine's defaults for sampling, sizes, and the export itself."""
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


def _export_onnx(args: argparse.Namespace) -> None:
    """`w2sd export --strong-onnx S --weak-onnx W --scheduler-config F`: plain denoisers."""
    from export.onnx_denoiser import OnnxExportOptions, export_onnx_engine

    diffusers_only = [
        f"--{name.replace('_', '-')}"
        for name in (
            "strong",
            "weak",
            "denoiser",
            "strong_lora",
            "weak_lora",
            "denoiser_lora",
            "strong_config",
            "weak_config",
            "denoiser_config",
            "variant",
        )
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


def run(args: argparse.Namespace) -> None:
    from export.engine_export import ExportOptions, export_engine
    from export.lora import LoraSpec

    if args.strong_onnx or args.weak_onnx or args.denoiser_onnx or args.scheduler_config:
        _export_onnx(args)
        return
    if args.strong is None or args.weak is None:
        raise InvalidArgumentError(
            "export needs --strong and --weak (diffusers folders or single files), or "
            "--strong-onnx, --weak-onnx and --scheduler-config (ONNX denoisers)"
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
            strong_config=_path(args.strong_config),
            weak_config=_path(args.weak_config),
            denoiser_config=_path(args.denoiser_config),
            variant=args.variant,
        )
    )


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)
