"""Diffusers folders (one per role) -> a w2sd engine dir with ONNX models and a manifest."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from w2sd import __version__
from w2sd.errors import InvalidArgumentError
from w2sd.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    artifact_entry,
    make_public,
    write_json_atomic,
)

from . import onnx_export as ox

# Spec bound for one exported model vs its PyTorch module (fp32, CPU).
EXPORT_PARITY_BOUND = 1e-4


@dataclass
class ExportOptions:
    strong: Path
    weak: Path
    out: Path
    denoiser: Path | None = None
    strong_guidance: float = 7.5
    weak_guidance: float | None = None  # None: strong's if the UNets differ, else 1.0
    denoiser_guidance: float | None = None  # None: strong's
    num_inference_steps: int = 25
    reflection_steps: int = 12
    inversion: str = "official"
    min_size: int | None = None
    max_size: int | None = None
    force: bool = False
    verify: bool = True
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


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
    if any(x.stat().st_size != y.stat().st_size for x, y in zip(fa, fb)):
        return False
    from w2sd.manifest import sha256_file

    return all(sha256_file(x) == sha256_file(y) for x, y in zip(fa, fb))


def _check_folder(path: Path, role: str) -> None:
    if not (path / "model_index.json").is_file():
        raise InvalidArgumentError(
            f"--{role}: '{path}' is not a diffusers pipeline folder (no model_index.json)"
        )
    if not (path / "unet" / "config.json").is_file():
        raise InvalidArgumentError(f"--{role}: '{path}' has no unet/config.json")


def _family(model_index: dict[str, Any]) -> str:
    cls = model_index.get("_class_name", "")
    if "XL" in cls:
        raise InvalidArgumentError(
            f"pipeline class {cls} (SDXL) is not supported by this export yet; "
            "SD 1.x/2.x pipelines are"
        )
    return "sd"


def _load_scheduler_config(folder: Path) -> dict[str, Any]:
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    cfg = dict(sched.config)
    # The spec runs DDIM with clip_sample and thresholding off, whatever the source says.
    cfg["clip_sample"] = False
    cfg["thresholding"] = False
    sched = DDIMScheduler.from_config(cfg)
    cfg = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    if cfg.get("trained_betas") is not None:
        cfg["trained_betas"] = [float(b) for b in cfg["trained_betas"]]
    cfg["alphas_cumprod"] = [float(a) for a in sched.alphas_cumprod.to(torch.float32).tolist()]
    return cfg


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


def _check_compatible(
    name: str, ref: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...], what: str
) -> None:
    for key in keys:
        if ref.get(key) != other.get(key):
            raise InvalidArgumentError(
                f"strong and {name} are incompatible: {what} field '{key}' differs "
                f"({ref.get(key)!r} vs {other.get(key)!r})"
            )


def _tokenizer_json(folder: Path, dst: Path) -> dict[str, Any]:
    """Save the pipeline's CLIP tokenizer as a `tokenizers` tokenizer.json; return its facts."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise InvalidArgumentError(f"{folder}/tokenizer: no fast tokenizer could be built")
    dst.parent.mkdir(parents=True, exist_ok=True)
    backend.save(str(dst))
    return {
        "max_length": int(tok.model_max_length),
        "pad_token_id": int(tok.pad_token_id),
        "pad_token": str(tok.pad_token),
    }


def export_engine(opts: ExportOptions) -> Path:
    """Write the engine dir; return its path. Nothing is left half-written on failure."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    log = opts.log
    denoiser = opts.denoiser or opts.strong
    folders = {"strong": Path(opts.strong), "weak": Path(opts.weak), "denoiser": Path(denoiser)}
    for role, path in folders.items():
        _check_folder(path, role)
    out = Path(opts.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not opts.force:
        raise InvalidArgumentError(
            f"--out: '{out}' exists and is not empty (use --force to replace)"
        )
    if opts.inversion not in ("official", "exact"):
        raise InvalidArgumentError(f"--inversion: unknown mode {opts.inversion!r}")
    if not 0 <= opts.reflection_steps <= opts.num_inference_steps - 1:
        raise InvalidArgumentError("--reflection-steps must be in [0, --steps - 1]")

    model_index = json.loads((folders["strong"] / "model_index.json").read_text())
    family = _family(model_index)
    scheduler = _load_scheduler_config(folders["strong"])
    for role in ("weak", "denoiser"):
        _family(json.loads((folders[role] / "model_index.json").read_text()))
        if (folders[role] / "scheduler").is_dir():
            _check_compatible(
                role,
                scheduler,
                _load_scheduler_config(folders[role]),
                _SCHEDULER_KEYS,
                "scheduler_config",
            )

    # Distinct UNet artifacts: a role whose weights equal an earlier role's reuses it.
    unet_sources: list[Path] = []
    role_unet: dict[str, int] = {}
    for role in ("strong", "weak", "denoiser"):
        for idx, src in enumerate(unet_sources):
            if _same_weights(src, folders[role], "unet"):
                role_unet[role] = idx
                break
        else:
            role_unet[role] = len(unet_sources)
            unet_sources.append(folders[role])

    weak_guidance = opts.weak_guidance
    if weak_guidance is None:
        weak_guidance = opts.strong_guidance if role_unet["weak"] != role_unet["strong"] else 1.0
    denoiser_guidance = (
        opts.denoiser_guidance if opts.denoiser_guidance is not None else opts.strong_guidance
    )
    if role_unet["weak"] == role_unet["strong"] and weak_guidance == opts.strong_guidance:
        log(
            "warning: strong and weak use the same UNet and guidance: there is no "
            "weak-to-strong gap, reflection will not change the result"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        log(f"[1/4] tokenizer and text encoder from {folders['strong']}")
        text_facts = _tokenizer_json(folders["strong"], tmp / "tokenizer" / "tokenizer.json")
        text_len = text_facts["max_length"]
        text_encoder = CLIPTextModel.from_pretrained(folders["strong"] / "text_encoder").eval()
        ox.export_text_encoder(text_encoder, tmp / "text_encoder" / "model.onnx", text_len)

        log(f"[2/4] VAE decoder from {folders['strong']}")
        vae = AutoencoderKL.from_pretrained(folders["strong"] / "vae").eval()
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        ox.export_vae_decoder(vae, tmp / "vae_decoder" / "model.onnx", latent_hw=8)

        unets_meta = []
        unet_modules = []
        ref_cfg: dict[str, Any] | None = None
        for idx, src in enumerate(unet_sources):
            roles_here = [r for r, i in role_unet.items() if i == idx]
            log(f"[3/4] UNet {idx} ({', '.join(roles_here)}) from {src}")
            unet = UNet2DConditionModel.from_pretrained(src / "unet").eval()
            cfg = dict(unet.config)
            if ref_cfg is None:
                ref_cfg = cfg
            else:
                _check_compatible(
                    roles_here[0],
                    ref_cfg,
                    cfg,
                    ("in_channels", "out_channels", "cross_attention_dim", "sample_size"),
                    "unet config",
                )
            if cfg["cross_attention_dim"] != text_encoder.config.hidden_size:
                raise InvalidArgumentError(
                    f"{src}: unet cross_attention_dim {cfg['cross_attention_dim']} != text "
                    f"encoder hidden_size {text_encoder.config.hidden_size}"
                )
            if cfg["in_channels"] != vae.config.latent_channels:
                raise InvalidArgumentError(
                    f"{src}: unet in_channels {cfg['in_channels']} != VAE latent_channels "
                    f"{vae.config.latent_channels}"
                )
            rel = f"unet{idx}/model.onnx"
            ox.export_unet(unet, tmp / rel, latent_hw=8 * 2, text_len=text_len)
            unets_meta.append({"file": rel, "source": str(src), "roles": roles_here})
            unet_modules.append(unet)
        assert ref_cfg is not None

        # Traced upsampling assumes latents divisible by 2**(number of upsamplers).
        num_up = sum(1 for b in ref_cfg["up_block_types"]) - 1
        size_multiple = vae_scale * (2 ** max(num_up, 0))
        default_size = int(ref_cfg["sample_size"]) * vae_scale
        default_size = max(size_multiple, default_size - default_size % size_multiple)
        min_size = opts.min_size or size_multiple
        max_size = opts.max_size or max(default_size * 2, 1024)
        for name, v in (("--min-size", min_size), ("--max-size", max_size)):
            if v % size_multiple:
                raise InvalidArgumentError(f"{name} must be a multiple of {size_multiple}")

        checks: dict[str, float] = {}
        if opts.verify:
            log("[4/4] checking each ONNX model against its PyTorch module")
            checks = _verify_exports(tmp, unets_meta, unet_modules, text_encoder, vae, text_len)
            for name, diff in checks.items():
                log(f"      {name}: max|onnx - torch| / max|torch| = {diff:.2e}")
                if diff > EXPORT_PARITY_BOUND:
                    raise RuntimeError(
                        f"exported {name} differs from PyTorch by {diff:.2e} of max|ref| "
                        f"(bound {EXPORT_PARITY_BOUND})"
                    )

        artifacts = {}
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                rel = f.relative_to(tmp).as_posix()
                artifacts[rel] = artifact_entry(tmp, rel)
        roles = {
            "strong": {"unet": role_unet["strong"], "guidance": float(opts.strong_guidance)},
            "weak": {"unet": role_unet["weak"], "guidance": float(weak_guidance)},
            "denoiser": {"unet": role_unet["denoiser"], "guidance": float(denoiser_guidance)},
        }
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_by": f"w2sd {__version__}",
            "family": family,
            "sources": {r: str(p) for r, p in folders.items()},
            "scheduler": scheduler,
            "latent_channels": int(vae.config.latent_channels),
            "vae_scale_factor": int(vae_scale),
            "vae_scaling_factor": float(vae.config.scaling_factor),
            "image": {
                "default_height": default_size,
                "default_width": default_size,
                "min_size": int(min_size),
                "max_size": int(max_size),
                "size_multiple": int(size_multiple),
            },
            "text": {
                "tokenizer": "tokenizer/tokenizer.json",
                "hidden_size": int(text_encoder.config.hidden_size),
                "force_zeros_for_empty_prompt": bool(
                    model_index.get("force_zeros_for_empty_prompt", False)
                ),
                **text_facts,
            },
            "unets": unets_meta,
            "roles": roles,
            "defaults": {
                "num_inference_steps": int(opts.num_inference_steps),
                "reflection_steps": int(opts.reflection_steps),
                "inversion": opts.inversion,
            },
            "models": {
                "unet": {"inputs": list(ox.UNET_INPUTS), "outputs": list(ox.UNET_OUTPUTS)},
                "text_encoder": {
                    "file": "text_encoder/model.onnx",
                    "inputs": list(ox.TEXT_INPUTS),
                    "outputs": list(ox.TEXT_OUTPUTS),
                },
                "vae_decoder": {
                    "file": "vae_decoder/model.onnx",
                    "inputs": list(ox.VAE_INPUTS),
                    "outputs": list(ox.VAE_OUTPUTS),
                },
            },
            "export_checks": checks,
            "artifacts": artifacts,
            "backends": {},
        }
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        if out.exists():
            shutil.rmtree(out)
        make_public(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"engine dir written: {out}")
    return out


def _verify_exports(
    root: Path,
    unets_meta: list[dict[str, Any]],
    unets: list[torch.nn.Module],
    text_encoder: torch.nn.Module,
    vae: torch.nn.Module,
    text_len: int,
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    checks = {}
    ids = torch.randint(0, text_encoder.config.vocab_size, (2, text_len), generator=gen)
    checks["text_encoder"] = ox.check_against_torch(
        root / "text_encoder/model.onnx", ox.TextEncoderForExport(text_encoder), {"input_ids": ids}
    )
    z = torch.randn(1, vae.config.latent_channels, 8, 8, generator=gen)
    checks["vae_decoder"] = ox.check_against_torch(
        root / "vae_decoder/model.onnx", ox.VaeDecoderForExport(vae), {"latent_sample": z}
    )
    for i, (meta, unet) in enumerate(zip(unets_meta, unets)):
        inputs = {
            "sample": torch.randn(2, unet.config.in_channels, 16, 16, generator=gen),
            "timestep": torch.tensor([501.0]),
            "encoder_hidden_states": torch.randn(
                2, text_len, unet.config.cross_attention_dim, generator=gen
            ),
        }
        checks[f"unet{i}"] = ox.check_against_torch(
            root / meta["file"], ox.UnetForExport(unet), inputs
        )
    return checks
