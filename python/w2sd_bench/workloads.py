"""The protocol's workloads, built locally from fixed seeds and cached as engine dirs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Workload:
    name: str
    steps: int
    reflection_steps: int
    height: int
    width: int
    strong_guidance: float
    weak_guidance: float
    description: str


WORKLOADS = {
    "tiny": Workload(
        "tiny",
        10,
        5,
        64,
        64,
        7.5,
        7.5,
        "tiny SD-1.x pair (weight gap), 64x64; for tests, says nothing about speed",
    ),
    "sd15-256": Workload(
        "sd15-256",
        10,
        5,
        256,
        256,
        7.5,
        1.0,
        "real SD 1.5 architecture, random weights (seed 0), 256x256, "
        "condition gap (one UNet, guidance 7.5 vs 1.0)",
    ),
    "gpu-sd15-512": Workload(
        "gpu-sd15-512",
        25,
        12,
        512,
        512,
        7.5,
        1.0,
        "real SD 1.5 architecture, random weights (seed 0), 512x512, T=25, λ=12, condition "
        "gap; the protocol's GPU workload (--backend cuda or tensorrt)",
    ),
    "gpu-sdxl-1024": Workload(
        "gpu-sdxl-1024",
        25,
        12,
        1024,
        1024,
        7.5,
        1.0,
        "real SDXL base architecture, random weights (seed 0), 1024x1024, T=25, λ=12, "
        "condition gap; the protocol's SDXL GPU workload (about 14 GB to build)",
    ),
    "sdxl-arch": Workload(
        "sdxl-arch",
        2,
        1,
        512,
        512,
        7.5,
        1.0,
        "real SDXL base architecture (2.57 B UNet parameters, CLIP-L and bigG-sized text "
        "encoders, SDXL VAE), random weights (seed 0), 512x512, T=2, λ=1, condition gap; "
        "about 14 GB per copy on disk: run it by name, never in CI",
    ),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sd_vae(seed: int, sample_size: int, scaling_factor: float) -> Any:
    """Stable Diffusion's VAE architecture (SD 1.x and SDXL share it), random weights."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def build_sd15_random(out: Path, seed: int = 0, image_size: int = 256) -> Path:
    """SD 1.5's UNet (diffusers' defaults with cross_attention_dim=768, 860 M parameters),
    CLIP ViT-L/14's text encoder and SD's VAE architectures, with random weights."""
    if (out / "model_index.json").exists():
        return out
    import torch
    from diffusers import (
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .tiny_models import sd_ddim_scheduler, tokenizer_ids, write_tiny_clip_tokenizer

    _log(f"building an SD 1.5-architecture model (random weights, seed {seed}) in {out}")
    write_tiny_clip_tokenizer(out / "tokenizer")
    bos, eos, _ = tokenizer_ids(out / "tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=image_size // 8)
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
            projection_dim=768,
        )
    )
    vae = _sd_vae(seed + 2, sample_size=image_size, scaling_factor=0.18215)
    scheduler = sd_ddim_scheduler()  # SD 1.5's and SDXL's DDIM settings
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(out / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_sdxl_random(out: Path, seed: int = 0) -> Path:
    """SDXL base 1.0's architecture (its UNet, CLIP ViT-L and OpenCLIP bigG-sized text
    encoders, VAE and scheduler settings) with random weights, saved as a diffusers folder."""
    if (out / "model_index.json").exists():
        return out
    import torch
    from diffusers import (
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from .tiny_models import sd_ddim_scheduler, tokenizer_ids, write_tiny_clip_tokenizer

    _log(f"building the sdxl-arch model (random weights, seed {seed}) in {out}")
    write_tiny_clip_tokenizer(out / "tokenizer")
    write_tiny_clip_tokenizer(out / "tokenizer_2", pad_token="!")
    bos, eos, _ = tokenizer_ids(out / "tokenizer")

    def text_config(hidden: int, layers: int, heads: int, act: str) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=49408,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            hidden_act=act,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
            projection_dim=hidden,
        )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(text_config(768, 12, 12, "quick_gelu"))
    torch.manual_seed(seed + 2)
    text_encoder_2 = CLIPTextModelWithProjection(text_config(1280, 32, 20, "gelu"))
    vae = _sd_vae(seed + 3, sample_size=1024, scaling_factor=0.13025)
    scheduler = sd_ddim_scheduler()  # SD 1.5's and SDXL's DDIM settings
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(out / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(out / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_model(name: str, root: Path) -> tuple[Path, Path]:
    """(strong, weak) diffusers folders of a workload, built once under root."""
    from .tiny_models import build_tiny_pair

    if name == "tiny":
        return build_tiny_pair(root / "models")
    if name in ("sdxl-arch", "gpu-sdxl-1024"):
        model = build_sdxl_random(root / "model")
    else:
        model = build_sd15_random(root / "model", image_size=WORKLOADS[name].height)
    return model, model


def prepare(
    name: str, cache_dir: Path, log: Callable[[str], None] = _log, backend: str = "cpu"
) -> Path:
    """The workload's engine dir in cache_dir, built for `backend` (made once, then reused)."""
    from engines.build import build_engine
    from w2sd.errors import EngineDirError
    from w2sd.manifest import load_manifest

    wl = WORKLOADS[name]
    root = cache_dir / name
    engine = root / "engine"
    current = (engine / "manifest.json").is_file()
    if current:
        try:
            load_manifest(engine)
        except EngineDirError as e:
            log(f"re-exporting the cached {name} workload ({e})")
            current = False
    if not current:
        # torch and diffusers only when the workload has to be built.
        from export.engine_export import ExportOptions, export_engine

        strong, weak = build_model(name, root)
        export_engine(
            ExportOptions(
                strong=strong,
                weak=weak,
                out=engine,
                force=True,
                num_inference_steps=wl.steps,
                reflection_steps=wl.reflection_steps,
                strong_guidance=wl.strong_guidance,
                weak_guidance=wl.weak_guidance,
                min_size=min(64, wl.height),
                log=log,
            )
        )
    if backend not in load_manifest(engine).backends:
        build_engine(str(engine), backend, log=log)
    return engine
