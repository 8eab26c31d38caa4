"""Diffusers folders (one per role, each with an optional LoRA) -> a w2sd engine dir.

VAE and scheduler come from the strong folder; each role's UNet and text
encoder(s) from its own folder. A LoRA is exported unfused with its scale as a graph
input (``lora_mode="input"``, the default: roles on the same base weights and LoRA file
share one artifact and pass their own scale per call) or fused at its role's scale
(``"fused"``: one artifact per (weights, LoRA, scale)). Identical text encoders are
exported once (text_encoders.py). Components are exported one at a time, each freed
before the next (onnx_export.export_component), so peak memory follows the largest one.
"""

from __future__ import annotations

import json
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

from . import onnx_export as ox
from .common import check_out_and_defaults, defaults_section, scheduler_section
from .families import Family, detect_family
from .lora import LoraSpec, fuse_unet_lora
from .lora_input import attach_lora_input
from .text_encoders import (
    EncoderPlan,
    encoder_sets_meta,
    export_text_encoders,
    plan_text_encoders,
)

# Spec bound for one exported model vs its PyTorch module (fp32, CPU).
EXPORT_PARITY_BOUND = 1e-4


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
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


_SCHEDULER_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "set_alpha_to_one",
    "steps_offset",
    "prediction_type",
    "timestep_spacing",
    "rescale_betas_zero_snr",
)
_UNET_KEYS = (
    "in_channels",
    "out_channels",
    "cross_attention_dim",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
)
_TEXT_KEYS = ("hidden_size", "projection_dim", "max_position_embeddings")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _check_folder(path: Path, role: str) -> None:
    if not (path / "model_index.json").is_file():
        raise InvalidArgumentError(
            f"--{role}: '{path}' is not a diffusers pipeline folder (no model_index.json)"
        )
    if not (path / "unet" / "config.json").is_file():
        raise InvalidArgumentError(f"--{role}: '{path}' has no unet/config.json")


def _check_same(
    role: str, what: str, ref: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...]
) -> None:
    """Raise naming the first field where `role`'s config differs from the strong one."""
    for key in keys:
        if ref.get(key) != other.get(key):
            raise InvalidArgumentError(
                f"strong and {role} are incompatible: {what} field '{key}' differs "
                f"({ref.get(key)!r} vs {other.get(key)!r})"
            )


def _same_weights(a: Path, b: Path, sub: str) -> bool:
    """True when two diffusers folders hold byte-identical weights for `sub`."""
    da, db = a / sub, b / sub
    if da.resolve() == db.resolve():
        return True

    def weight_files(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.suffix in (".safetensors", ".bin"))

    fa, fb = weight_files(da), weight_files(db)
    if [p.name for p in fa] != [p.name for p in fb]:
        return False
    if any(x.stat().st_size != y.stat().st_size for x, y in zip(fa, fb, strict=True)):
        return False
    return all(sha256_file(x) == sha256_file(y) for x, y in zip(fa, fb, strict=True))


def _scheduler_config(folder: Path) -> dict[str, Any]:
    """DDIMScheduler built from the folder's scheduler_config, plus its ᾱ table."""
    from diffusers import DDIMScheduler

    return scheduler_section(DDIMScheduler.from_pretrained(folder, subfolder="scheduler").config)


def _check_roles_compatible(folders: dict[str, Path], family: Family) -> dict[str, Any]:
    """Scheduler, UNet, text encoder and VAE facts that every role must share."""
    strong = folders["strong"]
    scheduler = _scheduler_config(strong)
    ref_unet = _read_json(strong / "unet" / "config.json")
    for role in ("weak", "denoiser"):
        folder = folders[role]
        if folder.resolve() == strong.resolve():
            continue
        other_family = detect_family(_read_json(folder / "model_index.json"))
        if other_family.name != family.name:
            raise InvalidArgumentError(
                f"strong and {role} are incompatible: model family differs "
                f"({family.name} vs {other_family.name})"
            )
        if (folder / "scheduler").is_dir():
            _check_same(
                role, "scheduler_config", scheduler, _scheduler_config(folder), _SCHEDULER_KEYS
            )
        _check_same(
            role, "unet config", ref_unet, _read_json(folder / "unet" / "config.json"), _UNET_KEYS
        )
        for enc in family.encoders:
            mine, theirs = (
                strong / enc.encoder / "config.json",
                folder / enc.encoder / "config.json",
            )
            if theirs.is_file():
                _check_same(
                    role, f"{enc.encoder} config", _read_json(mine), _read_json(theirs), _TEXT_KEYS
                )
        if (folder / "vae" / "config.json").is_file():
            _check_same(
                role,
                "vae config",
                _read_json(strong / "vae" / "config.json"),
                _read_json(folder / "vae" / "config.json"),
                ("latent_channels",),
            )
    return scheduler


LORA_MODES = ("input", "fused")


@dataclass
class UnetGroup:
    """One UNet artifact: its base folder (the first role's), LoRA and roles."""

    first: str
    lora: LoraSpec | None
    roles: list[str] = field(default_factory=list)


def _lora_scale(spec: LoraSpec | None) -> float:
    return 0.0 if spec is None else spec.scale


def _same_lora_file(a: LoraSpec, b: LoraSpec) -> bool:
    return a.path.resolve() == b.path.resolve() or sha256_file(a.path) == sha256_file(b.path)


def _unet_groups(
    folders: dict[str, Path], loras: dict[str, LoraSpec | None], mode: str
) -> tuple[list[UnetGroup], dict[str, int]]:
    """Distinct UNet artifacts and each role's index.

    fused: roles share an artifact when weights, LoRA file and scale all match.
    input: roles share one when their base weights match and they use the same LoRA file
    or none (a role without the LoRA runs the branch at scale 0, which adds exact zeros)."""
    groups: list[UnetGroup] = []
    role_unet: dict[str, int] = {}
    for role in ROLES:
        mine = loras[role]
        for idx, g in enumerate(groups):
            theirs = g.lora
            if mode == "fused":
                fits = (mine is None and theirs is None) or (
                    mine is not None
                    and theirs is not None
                    and mine.scale == theirs.scale
                    and _same_lora_file(mine, theirs)
                )
            else:
                fits = mine is None or theirs is None or _same_lora_file(mine, theirs)
            if fits and _same_weights(folders[g.first], folders[role], "unet"):
                if g.lora is None:
                    g.lora = mine
                g.roles.append(role)
                role_unet[role] = idx
                break
        else:
            role_unet[role] = len(groups)
            groups.append(UnetGroup(role, mine, [role]))
    return groups, role_unet


def export_engine(opts: ExportOptions) -> Path:
    """Write the engine dir; return its path. Nothing is left half-written on failure."""
    log = opts.log
    folders = {
        "strong": Path(opts.strong),
        "weak": Path(opts.weak),
        "denoiser": Path(opts.denoiser or opts.strong),
    }
    loras = {"strong": opts.strong_lora, "weak": opts.weak_lora, "denoiser": opts.denoiser_lora}
    for role, path in folders.items():
        _check_folder(path, role)
    out = Path(opts.out)
    check_out_and_defaults(
        out, opts.force, opts.inversion, opts.num_inference_steps, opts.reflection_steps
    )
    if opts.lora_mode not in LORA_MODES:
        raise InvalidArgumentError(
            f"--lora-mode: unknown {opts.lora_mode!r} (known: {', '.join(LORA_MODES)})"
        )

    model_index = _read_json(folders["strong"] / "model_index.json")
    family = detect_family(model_index)
    scheduler = _check_roles_compatible(folders, family)
    groups, role_unet = _unet_groups(folders, loras, opts.lora_mode)
    text_plan = plan_text_encoders(
        folders,
        family,
        lambda folder: bool(
            _read_json(folder / "model_index.json").get("force_zeros_for_empty_prompt", False)
        ),
    )

    # One model for strong and weak: the same artifact at the same LoRA scale (an unfused
    # LoRA gap shares the artifact but not the scale).
    same_model = role_unet["weak"] == role_unet["strong"] and _lora_scale(
        loras["weak"]
    ) == _lora_scale(loras["strong"])
    weak_guidance = opts.weak_guidance
    if weak_guidance is None:
        weak_guidance = 1.0 if same_model else opts.strong_guidance
    denoiser_guidance = (
        opts.strong_guidance if opts.denoiser_guidance is None else opts.denoiser_guidance
    )
    if same_model and weak_guidance == opts.strong_guidance:
        log(
            "warning: strong and weak use the same UNet and guidance: there is no weak-to-strong "
            "gap unless their prompts differ at sampling time"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        manifest = _export_into(
            tmp,
            opts,
            folders,
            loras,
            family,
            scheduler,
            text_plan,
            groups,
            role_unet,
            weak_guidance,
            denoiser_guidance,
        )
        write_manifest(tmp, manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"engine dir written: {out}")
    return out


def _export_into(
    tmp: Path,
    opts: ExportOptions,
    folders: dict[str, Path],
    loras: dict[str, LoraSpec | None],
    family: Family,
    scheduler: dict[str, Any],
    text_plan: EncoderPlan,
    groups: list[UnetGroup],
    role_unet: dict[str, int],
    weak_guidance: float,
    denoiser_guidance: float,
) -> EngineManifest:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    log = opts.log
    strong = folders["strong"]
    n_text = len(text_plan.encoders)
    total = n_text + 1 + len(groups)
    checks: dict[str, float] = {}

    def record(name: str, exported: ox.Exported) -> None:
        if exported.check is None:
            return
        log(f"      {name}: max|onnx - torch| / max|torch| = {exported.check:.2e}")
        if exported.check > EXPORT_PARITY_BOUND:
            raise ExportVerificationError(
                f"exported {name} differs from PyTorch by {exported.check:.2e} of "
                f"max|ref| (bound {EXPORT_PARITY_BOUND})"
            )
        checks[name] = exported.check

    encoders_meta = export_text_encoders(text_plan, tmp, log, 1, total, opts.verify, record)
    text_len = int(encoders_meta[0]["max_length"])
    text_dim = sum(encoders_meta[i]["hidden_size"] for i in text_plan.sets[0][0])

    log(f"[{n_text + 1}/{total}] VAE decoder from {strong}")
    vae_part = ox.vae_decoder_component(
        lambda: AutoencoderKL.from_pretrained(strong / "vae"), latent_hw=8
    )
    vae_done = ox.export_component(vae_part, tmp / "vae_decoder" / "model.onnx", opts.verify)
    record("vae_decoder", vae_done)
    vae = vae_done.facts
    vae_scale = int(vae["scale"])

    unets_meta: list[dict[str, Any]] = []
    unet_facts: list[dict[str, Any]] = []
    unet_inputs: tuple[str, ...] = ()
    role_scales: dict[str, float | None] = {r: None for r in ROLES}
    for idx, group in enumerate(groups):
        folder, lora = folders[group.first], group.lora
        unfused = lora is not None and opts.lora_mode == "input"
        scales: tuple[float, ...] = ()
        if unfused:
            for r in group.roles:
                spec = loras[r]
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
        log(f"{step} UNet {idx} ({', '.join(group.roles)}) from {folder}{what}")

        def build(
            folder: Path = folder, lora: LoraSpec | None = lora, unfused: bool = unfused
        ) -> ox.UnetForExport:
            unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
            scale = None
            if lora is not None and unfused:
                scale = attach_lora_input(family.pipeline_class(), unet, lora)
            elif lora is not None:
                fuse_unet_lora(family.pipeline_class(), unet, lora)
            return ox.UnetForExport(unet, scale)

        def facts(wrapper: torch.nn.Module, folder: Path = folder) -> dict[str, Any]:
            cfg = wrapper.unet.config
            if cfg.cross_attention_dim != text_dim:
                raise InvalidArgumentError(
                    f"{folder}: unet cross_attention_dim {cfg.cross_attention_dim} != text "
                    f"encoder hidden size {text_dim}"
                )
            if cfg.in_channels != vae["latent_channels"]:
                raise InvalidArgumentError(
                    f"{folder}: unet in_channels {cfg.in_channels} != VAE latent_channels "
                    f"{vae['latent_channels']}"
                )
            return {
                "up_levels": len(cfg.block_out_channels) - 1,
                "sample_size": int(cfg.sample_size),
                "added": ox.unet_added_dims(wrapper.unet),
            }

        rel = f"unet{idx}/model.onnx"
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
            {"file": rel, "source": str(folder), "lora": lora_meta, "roles": list(group.roles)}
        )

    added = unet_facts[0]["added"]
    # Traced upsampling assumes latents divisible by 2**(number of UNet upsamplers).
    size_multiple = vae_scale * 2 ** unet_facts[0]["up_levels"]
    default_size = unet_facts[0]["sample_size"] * vae_scale
    default_size = max(size_multiple, default_size - default_size % size_multiple)
    min_size = opts.min_size or size_multiple
    max_size = opts.max_size or max(default_size * 2, 1024)
    for name, v in (("--min-size", min_size), ("--max-size", max_size)):
        if v % size_multiple:
            raise InvalidArgumentError(f"{name} must be a multiple of {size_multiple}")
    if min_size > max_size:
        raise InvalidArgumentError("--min-size must not exceed --max-size")

    artifacts = artifacts_under(tmp, tmp)
    guidance = {
        "strong": opts.strong_guidance,
        "weak": weak_guidance,
        "denoiser": denoiser_guidance,
    }
    return EngineManifest.model_validate(
        {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_by": f"w2sd {__version__}",
            "family": family.name,
            "sources": {r: str(p) for r, p in folders.items()},
            "scheduler": scheduler,
            "latent_channels": int(vae["latent_channels"]),
            "vae_scale_factor": int(vae_scale),
            "vae_scaling_factor": float(vae["scaling_factor"]),
            "image": {
                "default_height": default_size,
                "default_width": default_size,
                "min_size": int(min_size),
                "max_size": int(max_size),
                "size_multiple": int(size_multiple),
            },
            "text": {
                "encoders": encoders_meta,
                "encoder_sets": encoder_sets_meta(text_plan),
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
                    "unet": role_unet[r],
                    "text": text_plan.role_set[r],
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
