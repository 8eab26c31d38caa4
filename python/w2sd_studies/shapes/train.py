"""Train the shapes world's base text-to-image model (shipped as
python/w2sd_studies/shapes/models/base; ``shapes.finetune`` makes the demo's models from it).

Draws its own dataset (python/w2sd_studies/shapes/render.py), then trains, on the CPU:
1. a small VAE (32x32 RGB <-> 4x8x8 latents),
2. a small CLIP text encoder and UNet together, with the usual epsilon loss and 10%
   empty captions (for classifier-free guidance).
Writes OUT/strong (the final checkpoint: the base model) and OUT/weak (the text encoder +
UNet of an earlier checkpoint of the same run: the first shipped pair's weak model, a
weight gap). Deterministic for a given seed, thread count and CPU (~36 min on 2 vCPUs).

    python -m w2sd_studies.shapes.train --out shapes-train
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from w2sd_bench.tiny_models import write_tiny_clip_tokenizer
from w2sd_studies.shapes import COLOURS, SHAPES, render, sample_scenes

MAX_LENGTH = 12  # "a yellow triangle below a green square" is 9 tokens with bos/eos
TEXT_HIDDEN = 64
WORDS = ["a", "above", "below", *COLOURS, *SHAPES]


def log(msg: str) -> None:
    print(f"[train_shapes {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def scheduler_kwargs() -> dict:
    return dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        prediction_type="epsilon",
    )


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def make_text_encoder(tok_dir: Path) -> CLIPTextModel:
    vocab = json.loads((tok_dir / "vocab.json").read_text())
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            hidden_size=TEXT_HIDDEN,
            intermediate_size=128,
            num_attention_heads=4,
            num_hidden_layers=2,
            projection_dim=TEXT_HIDDEN,
            vocab_size=len(vocab),
            max_position_embeddings=MAX_LENGTH,
        )
    )


def dataset(n: int, seed: int, relations: tuple[str, ...]) -> tuple[torch.Tensor, list[str]]:
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(rng, n, relations)
    images = np.stack([render(s, rng) for s, _ in scenes])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, [p for _, p in scenes]


def train_vae(x: torch.Tensor, steps: int, batch: int, gen: torch.Generator) -> AutoencoderKL:
    vae = make_vae()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        dist = vae.encode(x[idx]).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        kl = dist.kl().mean() / z[0].numel()
        loss = F.mse_loss(recon, x[idx]) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(
                f"vae step {step}/{steps}: mse {F.mse_loss(recon, x[idx]).item():.5f} "
                f"kl {kl.item():.3f} ({time.perf_counter() - t0:.0f}s)"
            )
    return vae.eval()


@torch.no_grad()
def encode_all(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)])


@dataclass
class Denoiser:
    """What the denoiser training updates: the text encoder and the UNet, together."""

    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel


@dataclass
class Data:
    """Scaled VAE latents, their captions' token ids, and the empty caption's ids."""

    latents: torch.Tensor
    ids: torch.Tensor
    empty_ids: torch.Tensor


@dataclass
class Schedule:
    steps: int
    batch: int
    lr: float
    warmup: int


def train_denoiser(
    model: Denoiser,
    data: Data,
    schedule: Schedule,
    gen: torch.Generator,
    after_step: Callable[[int], None] = lambda step: None,
) -> None:
    """The epsilon loss with 10% empty captions (for classifier-free guidance), AdamW with
    a linear warm-up, gradients clipped at 1."""
    params = list(model.unet.parameters()) + list(model.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(schedule.warmup, 1))
    )
    noise_sched = DDPMScheduler(**scheduler_kwargs())
    model.text_encoder.train()
    model.unet.train()
    t0 = time.perf_counter()
    for step in range(schedule.steps):
        idx = torch.randint(0, len(data.latents), (schedule.batch,), generator=gen)
        batch_ids = data.ids[idx].clone()
        drop = torch.rand(schedule.batch, generator=gen) < 0.1
        batch_ids[drop] = data.empty_ids
        z0 = data.latents[idx]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (schedule.batch,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        cond = model.text_encoder(batch_ids).last_hidden_state
        loss = F.mse_loss(model.unet(zt, t, cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        if step % 250 == 0 or step == schedule.steps - 1:
            log(
                f"unet step {step}/{schedule.steps}: loss {loss.item():.4f} "
                f"({time.perf_counter() - t0:.0f}s)"
            )
        after_step(step)
    model.text_encoder.eval()
    model.unet.eval()


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**scheduler_kwargs(), set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    # diffusers records where each model was loaded from (a path of the training machine):
    # the shipped folders do not need it.
    for config in out.glob("*/config.json"):
        fields = json.loads(config.read_text())
        if fields.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    log(f"saved {out}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="shapes-train")
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--unet-steps", type=int, default=5000)
    ap.add_argument("--weak-step", type=int, default=1000, help="checkpoint kept as the weak model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--relations",
        default="above",
        help="caption relations: 'above' (the first-named shape is on top) or 'above,below' "
        "(both phrasings; the first shipped run, whose models never learnt the relation)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    work = out / "_work"
    work.mkdir(parents=True, exist_ok=True)

    x, captions = dataset(args.images, args.seed, tuple(args.relations.split(",")))
    log(f"rendered {len(x)} images")
    vae = train_vae(x, args.vae_steps, 32, gen)
    latents = encode_all(vae, x)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    latents = latents * vae.config.scaling_factor
    log(f"latents {tuple(latents.shape)}, scaling_factor {vae.config.scaling_factor:.4f}")

    tok_dir = work / "tokenizer"
    write_tiny_clip_tokenizer(tok_dir, words=WORDS, max_length=MAX_LENGTH)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    ids = tokenizer(
        captions + [""],
        padding="max_length",
        max_length=MAX_LENGTH,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    empty_ids, ids = ids[-1], ids[:-1]

    text_encoder = make_text_encoder(tok_dir)
    unet = make_unet()
    log(
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, text encoder "
        f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f}M"
    )

    def keep_weak(step: int) -> None:
        if step + 1 == args.weak_step:
            save_pipeline(out / "weak", vae, text_encoder.eval(), tokenizer, unet.eval())
            text_encoder.train()
            unet.train()

    train_denoiser(
        Denoiser(text_encoder, unet),
        Data(latents, ids, empty_ids),
        Schedule(steps=args.unet_steps, batch=args.batch, lr=1e-3, warmup=200),
        gen,
        after_step=keep_weak,
    )
    save_pipeline(out / "strong", vae, text_encoder.eval(), tokenizer, unet.eval())
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
