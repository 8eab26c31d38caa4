"""Diffusers checkpoints (one per role, each with an optional LoRA) -> a w2sd engine dir.

Each role is a diffusers folder or a single-file checkpoint, in whatever dtype or layout it
is stored (checkpoints.py); export traces and verifies in fp32. VAE and scheduler come from
the strong role; each role's UNet and text encoder(s) from its own checkpoint. A LoRA is
exported unfused with its scale as a graph input (``lora_mode="input"``, the default: roles
on the same base weights and LoRA file share one artifact and pass their own scale per
call) or fused at its role's scale
(``"fused"``: one artifact per (weights, LoRA, scale)). Identical text encoders are
exported once (text_encoders.py). Components are exported one at a time, each freed
before the next (onnx_export.export_component), so peak memory follows the largest one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engines.common import artifacts_under, replace_dir
from w2sd import __version__
from w2sd.errors import ExportVerificationError, InvalidArgumentError
from w2sd.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ROLES,
    EngineManifest,
    sha256_file,
    write_manifest,
)
from w2sd.spec_bounds import FP32_LATENT_RTOL

from . import onnx_export as ox
from .checkpoints import Checkpoint, open_checkpoint
from .common import check_out_and_defaults, defaults_section
from .families import Family
from .lora import LoraSpec, fuse_unet_lora
from .lora_input import attach_lora_input
from .role_plan import LORA_MODES, UnetGroup, check_roles_compatible, lora_scale, unet_groups
from .text_encoders import (
    EncoderPlan,
    encoder_sets_meta,
    export_text_encoders,
    plan_text_encoders,
)


@dataclass
class ExportOptions:
    strong: Path
    weak: Path
    out: Path
    denoiser: Path | None = None
    strong_lora: LoraSpec | None = None
    weak_lora: LoraSpec | None = None
    denoiser_lora: LoraSpec | None = None
    strong_guidance: float = 7.5
    weak_guidance: float | None = None  # None: strong's if the models differ, else 1.0
    denoiser_guidance: float | None = None  # None: strong's
    num_inference_steps: int = 25
    reflection_steps: int = 12
    inversion: str = "official"
    lora_mode: str = "input"  # "input": LoRA scale as a graph input; "fused": fused per scale
    min_size: int | None = None
    max_size: int | None = None
    force: bool = False
    verify: bool = True
    # A single-file role's local diffusers config folder (default: the strong one's).
    strong_config: Path | None = None
    weak_config: Path | None = None
    denoiser_config: Path | None = None
    variant: str | None = None  # weights variant to load ("fp16") where a folder has it
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


@dataclass
class _Plan:
    """Everything decided before a file is written."""

    cks: dict[str, Checkpoint]
    loras: dict[str, LoraSpec | None]
    family: Family
    scheduler: dict[str, Any]
    text_plan: EncoderPlan
    groups: list[UnetGroup]
    role_unet: dict[str, int]
    guidance: dict[str, float]
    stored: dict[str, dict[str, Any]]


def open_roles(opts: ExportOptions) -> dict[str, Checkpoint]:
    """Each role's Checkpoint (a folder, or a single file with its config folder; a single
    file without --ROLE-config takes the strong role's config folder)."""
    paths = {"strong": opts.strong, "weak": opts.weak, "denoiser": opts.denoiser or opts.strong}
    configs = {"strong": opts.strong_config, "weak": opts.weak_config}
    configs["denoiser"] = opts.denoiser_config if opts.denoiser else opts.strong_config
    strong = open_checkpoint(
        "strong", Path(paths["strong"]), _path(configs["strong"]), opts.variant, None
    )
    cks = {"strong": strong}
    for role in ("weak", "denoiser"):
        cks[role] = open_checkpoint(
            role, Path(paths[role]), _path(configs[role]), opts.variant, strong.config_dir
        )
    return cks


def _path(p: Path | str | None) -> Path | None:
    return None if p is None else Path(p)


def _plan(opts: ExportOptions) -> _Plan:
    cks = open_roles(opts)
    loras = {"strong": opts.strong_lora, "weak": opts.weak_lora, "denoiser": opts.denoiser_lora}
    if opts.lora_mode not in LORA_MODES:
        raise InvalidArgumentError(
            f"--lora-mode: unknown {opts.lora_mode!r} (known: {', '.join(LORA_MODES)})"
        )
    family = cks["strong"].family()
    # Every weights file a loader will read is checked first (headers, sizes, dtype).
    stored = {}
    for role, ck in cks.items():
        subs = ("unet", *(e.encoder for e in family.encoders))
        dtype = ck.check(("vae", *subs) if role == "strong" else subs)
        stored[role] = ck.stored(dtype)
    scheduler = check_roles_compatible(cks, family)
    groups, role_unet = unet_groups(cks, loras, opts.lora_mode)
    text_plan = plan_text_encoders(
        cks, family, lambda ck: bool(ck.model_index().get("force_zeros_for_empty_prompt", False))
    )
    # One model for strong and weak: the same artifact at the same LoRA scale (an unfused
    # LoRA gap shares the artifact but not the scale).
    same_model = role_unet["weak"] == role_unet["strong"] and lora_scale(
        loras["weak"]
    ) == lora_scale(loras["strong"])
    weak_guidance = opts.weak_guidance
    if weak_guidance is None:
        weak_guidance = 1.0 if same_model else opts.strong_guidance
    denoiser_guidance = (
        opts.strong_guidance if opts.denoiser_guidance is None else opts.denoiser_guidance
    )
    if same_model and weak_guidance == opts.strong_guidance:
        opts.log(
            "warning: strong and weak use the same UNet and guidance: there is no weak-to-strong "
            "gap unless their prompts differ at sampling time"
        )
    guidance = {
        "strong": opts.strong_guidance,
        "weak": weak_guidance,
        "denoiser": denoiser_guidance,
    }
    return _Plan(cks, loras, family, scheduler, text_plan, groups, role_unet, guidance, stored)


def export_engine(opts: ExportOptions) -> Path:
    """Write the engine dir; return its path. Nothing is left half-written on failure."""
    out = Path(opts.out)
    check_out_and_defaults(
        out, opts.force, opts.inversion, opts.num_inference_steps, opts.reflection_steps
    )
    plan = _plan(opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        manifest = _export_into(tmp, opts, plan)
        write_manifest(tmp, manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    opts.log(f"engine dir written: {out}")
    return out


def _verified(checks: dict[str, float], log: Callable[[str], None]) -> Callable[..., None]:
    """The recorder of export checks: refuses an artifact over the spec's bound."""

    def record(name: str, exported: ox.Exported) -> None:
        if exported.check is None:
            return
        log(f"      {name}: max|onnx - torch| / max|torch| = {exported.check:.2e}")
        if not exported.check <= FP32_LATENT_RTOL:
            raise ExportVerificationError(
                f"exported {name} differs from PyTorch by {exported.check:.2e} of "
                f"max|ref| (bound {FP32_LATENT_RTOL})"
            )
        checks[name] = exported.check

    return record


def _unet_facts(
    where: Path, text_dim: int, latent_channels: int
) -> Callable[[torch.nn.Module], dict[str, Any]]:
    """The facts read from a UNet before it is freed, refusing one that does not fit the
    text encoders or the VAE."""

    def facts(wrapper: torch.nn.Module) -> dict[str, Any]:
        cfg = wrapper.unet.config
        if cfg.cross_attention_dim != text_dim:
            raise InvalidArgumentError(
                f"{where}: unet cross_attention_dim {cfg.cross_attention_dim} != text "
                f"encoder hidden size {text_dim}"
            )
        if cfg.in_channels != latent_channels:
            raise InvalidArgumentError(
                f"{where}: unet in_channels {cfg.in_channels} != VAE latent_channels "
                f"{latent_channels}"
            )
        return {
            "up_levels": len(cfg.block_out_channels) - 1,
            "sample_size": int(cfg.sample_size),
            "added": ox.unet_added_dims(wrapper.unet),
        }

    return facts


def _export_unets(
    tmp: Path, opts: ExportOptions, plan: _Plan, text_dim: int, vae: dict[str, Any], record: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[str, ...], dict[str, float | None]]:
    """Each distinct UNet artifact: (manifest entries, facts, input names, role scales)."""
    n_text = len(plan.text_plan.encoders)
    total = n_text + 1 + len(plan.groups)
    unets_meta: list[dict[str, Any]] = []
    unet_facts: list[dict[str, Any]] = []
    unet_inputs: tuple[str, ...] = ()
    role_scales: dict[str, float | None] = {r: None for r in ROLES}
    pipeline_cls = plan.family.pipeline_class
    for idx, group in enumerate(plan.groups):
        ck, lora = plan.cks[group.first], group.lora
        unfused = lora is not None and opts.lora_mode == "input"
        scales: tuple[float, ...] = ()
        if unfused:
            for r in group.roles:
                spec = plan.loras[r]
                role_scales[r] = 0.0 if spec is None else spec.scale
            scales = tuple(
                dict.fromkeys(s for r in group.roles if (s := role_scales[r]) is not None)
            )
        what = ""
        if lora is not None:
            what = f" + LoRA {lora.path.name} " + (
                "unfused, scale as input ("
                + ", ".join(f"{r} {role_scales[r]:+g}" for r in group.roles)
                + ")"
                if unfused
                else f"fused at {lora.scale:+g}"
            )
        step = f"[{n_text + 2 + idx}/{total}]"
        opts.log(f"{step} UNet {idx} ({', '.join(group.roles)}) from {ck.path}{what}")

        def build(
            ck: Checkpoint = ck, lora: LoraSpec | None = lora, unfused: bool = unfused
        ) -> ox.UnetForExport:
            unet = ck.load_unet()
            scale = None
            if lora is not None and unfused:
                scale = attach_lora_input(pipeline_cls(), unet, lora)
            elif lora is not None:
                fuse_unet_lora(pipeline_cls(), unet, lora)
            return ox.UnetForExport(unet, scale)

        rel = f"unet{idx}/model.onnx"
        text_len = int(plan.text_plan.encoders[0].facts["max_length"])
        facts = _unet_facts(ck.path, text_dim, int(vae["latent_channels"]))
        part = ox.unet_component(
            build, latent_hw=16, text_len=text_len, lora_scales=scales, facts=facts
        )
        done = ox.export_component(part, tmp / rel, opts.verify)
        record(f"unet{idx}", done)
        unet_inputs = tuple(n for n in done.input_names if n != ox.LORA_SCALE_NAME)
        unet_facts.append(done.facts)
        lora_meta = None
        if lora is not None:
            lora_meta = {
                "file": str(lora.path),
                "sha256": sha256_file(lora.path),
                "scale": None if unfused else lora.scale,
                "input": ox.LORA_SCALE_NAME if unfused else None,
            }
        unets_meta.append(
            {"file": rel, "source": str(ck.path), "lora": lora_meta, "roles": list(group.roles)}
        )
    return unets_meta, unet_facts, unet_inputs, role_scales


def _export_into(tmp: Path, opts: ExportOptions, plan: _Plan) -> EngineManifest:
    log = opts.log
    strong = plan.cks["strong"]
    n_text = len(plan.text_plan.encoders)
    total = n_text + 1 + len(plan.groups)
    checks: dict[str, float] = {}
    record = _verified(checks, log)

    encoders_meta = export_text_encoders(plan.text_plan, tmp, log, 1, total, opts.verify, record)
    text_dim = sum(encoders_meta[i]["hidden_size"] for i in plan.text_plan.sets[0][0])

    log(f"[{n_text + 1}/{total}] VAE decoder from {strong.path}")
    vae_part = ox.vae_decoder_component(strong.load_vae, latent_hw=8)
    vae_done = ox.export_component(vae_part, tmp / "vae_decoder" / "model.onnx", opts.verify)
    record("vae_decoder", vae_done)
    vae = vae_done.facts
    unets_meta, unet_facts, unet_inputs, role_scales = _export_unets(
        tmp, opts, plan, text_dim, vae, record
    )
    return _manifest(
        tmp,
        opts,
        plan,
        encoders_meta,
        text_dim,
        vae,
        unets_meta,
        unet_facts,
        unet_inputs,
        role_scales,
        checks,
    )


def _image_section(opts: ExportOptions, vae_scale: int, facts: dict[str, Any]) -> dict[str, int]:
    """Default, smallest and largest image sizes, and the multiple they must be of."""
    # Traced upsampling assumes latents divisible by 2**(number of UNet upsamplers).
    size_multiple = vae_scale * 2 ** facts["up_levels"]
    default_size = facts["sample_size"] * vae_scale
    default_size = max(size_multiple, default_size - default_size % size_multiple)
    min_size = opts.min_size or size_multiple
    max_size = opts.max_size or max(default_size * 2, 1024)
    for name, v in (("--min-size", min_size), ("--max-size", max_size)):
        if v % size_multiple:
            raise InvalidArgumentError(f"{name} must be a multiple of {size_multiple}")
    if min_size > max_size:
        raise InvalidArgumentError("--min-size must not exceed --max-size")
    return {
        "default_height": default_size,
        "default_width": default_size,
        "min_size": int(min_size),
        "max_size": int(max_size),
        "size_multiple": int(size_multiple),
    }


def _manifest(
    tmp: Path,
    opts: ExportOptions,
    plan: _Plan,
    encoders_meta: list[dict[str, Any]],
    text_dim: int,
    vae: dict[str, Any],
    unets_meta: list[dict[str, Any]],
    unet_facts: list[dict[str, Any]],
    unet_inputs: tuple[str, ...],
    role_scales: dict[str, float | None],
    checks: dict[str, float],
) -> EngineManifest:
    vae_scale = int(vae["scale"])
    text_len = int(encoders_meta[0]["max_length"])
    added = unet_facts[0]["added"]

    artifacts = artifacts_under(tmp, tmp)
    guidance = plan.guidance
    return EngineManifest.model_validate(
        {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_by": f"w2sd {__version__}",
            "family": plan.family.name,
            "sources": {r: str(ck.path) for r, ck in plan.cks.items()},
            "stored": plan.stored,
            "scheduler": plan.scheduler,
            "latent_channels": int(vae["latent_channels"]),
            "vae_scale_factor": int(vae_scale),
            "vae_scaling_factor": float(vae["scaling_factor"]),
            "image": _image_section(opts, vae_scale, unet_facts[0]),
            "text": {
                "encoders": encoders_meta,
                "encoder_sets": encoder_sets_meta(plan.text_plan),
                "text_len": text_len,
                "text_dim": int(text_dim),
            },
            "unet_added_conditions": None
            if added is None
            else {
                "pooled_dim": added[0],
                "time_ids_dim": added[1],
            },
            "unets": unets_meta,
            "roles": {
                r: {
                    "unet": plan.role_unet[r],
                    "text": plan.text_plan.role_set[r],
                    "guidance": float(guidance[r]),
                    "lora_scale": role_scales[r],
                }
                for r in ROLES
            },
            "defaults": defaults_section(
                opts.num_inference_steps, opts.reflection_steps, opts.inversion
            ),
            "models": {
                "unet": {"inputs": list(unet_inputs), "outputs": list(ox.UNET_OUTPUTS)},
                "vae_decoder": {
                    "file": "vae_decoder/model.onnx",
                    "inputs": list(ox.VAE_INPUTS),
                    "outputs": list(ox.VAE_OUTPUTS),
                    "force_upcast": bool(vae.get("force_upcast", True)),
                },
            },
            "export_checks": checks,
            "artifacts": artifacts,
            "backends": {},
        }
    )
