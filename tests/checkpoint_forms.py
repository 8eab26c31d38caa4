"""Tiny pipelines stored the ways users have them: fp16/bf16 weights, variant files only,
.bin and sharded files, and single files in the original (LDM/A1111) key layout, made by
converting the diffusers weights back (the inverse of diffusers' single_file_utils
conversion for these configs; ``single_file`` checks the round trip through diffusers'
own converters before it writes anything)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return dict(_RESNET).get(name, name) + "." + tail


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers UNet2DConditionModel keys -> ``model.diffusion_model.*`` keys."""
    per = config["layers_per_block"] + 1
    attn_ups = {i for i, t in enumerate(config["up_block_types"]) if "CrossAttn" in t}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|\w+)\.(\d+)\.(.*)", key)
        module, _, param = key.rpartition(".")
        if module in _UNET_FIXED:
            new = f"{_UNET_FIXED[module]}.{param}"
        elif head == "mid_block":
            kind, j, tail = rest.split(".", 2)
            new = (
                f"middle_block.{2 * int(j)}.{_resnet(tail)}"
                if kind == "resnets"
                else f"middle_block.1.{tail}"
            )
        elif m:
            down = m.group(1) == "down_blocks"
            i, kind, j, tail = int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            first = 1 + i * per if down else i * per  # input_blocks.0 is conv_in
            blocks = "input_blocks" if down else "output_blocks"
            if kind == "downsamplers":
                new = f"{blocks}.{first + per - 1}.0.op.{tail.removeprefix('conv.')}"
            elif kind == "upsamplers":
                slot = 2 if i in attn_ups else 1
                new = f"{blocks}.{first + per - 1}.{slot}.{tail}"
            elif kind == "resnets":
                new = f"{blocks}.{first + j}.0.{_resnet(tail)}"
            else:
                new = f"{blocks}.{first + j}.1.{tail}"
        else:
            raise ValueError(f"no LDM name for UNet key {key!r}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"))


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers AutoencoderKL keys -> ``first_stage_model.*`` keys."""
    n = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(
            r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new
        )
        new = re.sub(
            r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new
        )
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.",
            lambda m: f"decoder.up.{n - 1 - int(m.group(1))}.block.",
            new,
        )
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{n - 1 - int(m.group(1))}.upsample.",
            new,
        )
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            new = new.replace("to_out.0", "proj_out")
            for a, b in _VAE_ATTN:
                new = new.replace(f".{a}.", f".{b}.")
            if value.ndim == 2:  # the original stores these as 1x1 convolutions
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """transformers CLIPTextModel keys -> the original's ``PREFIX.text_model.*`` keys."""
    return {
        prefix + ("" if k.startswith("text_model.") else "text_model.") + k: v
        for k, v in state.items()
    }


def open_clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """transformers CLIPTextModel(WithProjection) keys -> OpenCLIP's (SD 2.x, SDXL's second
    encoder): fused in_proj, resblocks, ln_final, text_projection transposed."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
    }
    if "text_projection.weight" in state:
        out[prefix + "text_projection"] = state.pop("text_projection.weight").T.contiguous()
    for kind in ("weight", "bias"):
        out[prefix + f"ln_final.{kind}"] = state.pop(f"final_layer_norm.{kind}")
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    for n in sorted(layers):
        src, dst = f"encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv)
            for a, b in (
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                out[f"{dst}{b}.{kind}"] = state.pop(f"{src}{a}.{kind}")
    if state:
        raise ValueError(f"OpenCLIP names missing for {sorted(state)[:4]}")
    return out


def _module_state(folder: Path, sub: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted((folder / sub).glob("*.safetensors"))
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def single_file(pipeline: Path, out_file: Path, dtype: str = "float16") -> Path:
    """Write `pipeline` (a tiny SD 1.x or SDXL folder, fp32 safetensors) as one
    original-layout .safetensors file in `dtype`."""
    import json

    import torch
    from safetensors.torch import save_file

    index = json.loads((pipeline / "model_index.json").read_text())
    cfg = {s: json.loads((pipeline / s / "config.json").read_text()) for s in ("unet", "vae")}
    tensors = unet_to_ldm(_module_state(pipeline, "unet"), cfg["unet"])
    tensors.update(vae_to_ldm(_module_state(pipeline, "vae"), cfg["vae"]))
    te = _module_state(pipeline, "text_encoder")
    if "text_encoder_2" in index:
        tensors.update(clip_to_ldm(te, "conditioner.embedders.0.transformer."))
        te2 = _module_state(pipeline, "text_encoder_2")
        tensors.update(open_clip_to_ldm(te2, "conditioner.embedders.1.model."))
    else:
        tensors.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    _check_round_trip(tensors, pipeline, cfg)
    target = getattr(torch, dtype)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(target).contiguous() for k, v in tensors.items()}, str(out_file))
    return out_file


def _check_round_trip(tensors: dict[str, Any], pipeline: Path, cfg: dict[str, Any]) -> None:
    """diffusers' own converters must give back exactly the diffusers weights."""
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    for sub, convert in (
        ("unet", convert_ldm_unet_checkpoint),
        ("vae", convert_ldm_vae_checkpoint),
    ):
        want = _module_state(pipeline, sub)
        got = convert(dict(tensors), cfg[sub])
        assert set(got) == set(want), (sub, sorted(set(got) ^ set(want))[:6])
        for k, v in want.items():
            assert torch.equal(got[k].reshape(v.shape), v), (sub, k)


def save_pipeline(
    pipeline: Path,
    out: Path,
    dtype: str,
    *,
    variant: str | None = None,
    safetensors: bool = True,
    shard: str | None = None,
) -> Path:
    """`pipeline` saved again: weights in `dtype`, as `variant` files only (what
    save_pretrained(variant=...) writes), .bin instead of .safetensors, or sharded."""
    import torch
    from diffusers import DiffusionPipeline

    if out.exists():
        shutil.rmtree(out)
    pipe = DiffusionPipeline.from_pretrained(pipeline, local_files_only=True)
    pipe.to(getattr(torch, dtype))
    kwargs: dict[str, Any] = {"safe_serialization": safetensors, "variant": variant}
    if shard:
        kwargs["max_shard_size"] = shard
    pipe.save_pretrained(out, **kwargs)
    return out


def rounded_fp32(pipeline: Path, out: Path, through: str) -> Path:
    """The fp32 folder holding exactly the weights a `through`-stored copy holds (every
    weight rounded to `through` and back): what those checkpoints must match."""
    import torch
    from diffusers import DiffusionPipeline

    if out.exists():
        shutil.rmtree(out)
    pipe = DiffusionPipeline.from_pretrained(pipeline, local_files_only=True)
    pipe.to(getattr(torch, through)).to(torch.float32)
    pipe.save_pretrained(out)
    return out


# form -> (the dtype it rounds weights through, manifest "stored" of the strong role)
FORMS = {
    "fp16": ("float16", {"format": "diffusers", "variant": None, "dtype": "float16"}),
    "fp16-variant-only": (
        "float16",
        {"format": "diffusers", "variant": "fp16", "dtype": "float16"},
    ),
    "bf16": ("bfloat16", {"format": "diffusers", "variant": None, "dtype": "bfloat16"}),
    "single-file": ("float16", {"format": "single_file", "variant": None, "dtype": "float16"}),
}


def base_pipeline(zoo: Any, family: str, seed: int) -> Path:
    """SD 1.x, or SDXL with a second text encoder wider than the first (as SDXL's 1280 vs
    768: diffusers' single-file loader tells the two apart by width)."""
    if family == "sd1":
        return zoo.pipeline("sd1", seed)
    from w2sd_bench.tiny_models import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(
        zoo.root / "models" / f"sdxl-wide-{seed}", unet_seed=seed, text_hidden_2=64
    )


def stored_form(zoo: Any, family: str, form: str) -> tuple[Path, dict[str, object]]:
    """The strong pipeline stored as `form`: (path, extra ExportOptions)."""
    base = base_pipeline(zoo, family, 1)
    root = zoo.root / "forms" / family
    out = root / form
    if form == "single-file":
        path = out.with_suffix(".safetensors")
        if not path.exists():
            single_file(base, path, "float16")
        return path, {"strong_config": base}
    if not out.exists():
        variant = "fp16" if form == "fp16-variant-only" else None
        save_pipeline(base, out, FORMS[form][0], variant=variant)
    return out, {}
