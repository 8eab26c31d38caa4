"""Fine-tune the minority experiment's models (``shapes.minority``).

The strong model starts from the base pipeline (VAE, tokenizer, text encoder, UNet; the
VAE and tokenizer stay as they are) and trains the text encoder and UNet on drawn data
(``minority.draws``): half of them layout captions ("a circle above a square") whose top
colour follows the model's red share, the rest fully specified captions, as uniform as the
base model's data. Each weak model continues from the strong model for --weak-steps on the
same draws with its own red share (and another seed), so a weak model differs from the
strong one by what its extra data pushes it towards: more red (gap > 0), the same share
(gap ~ 0: only the continued training's noise) or less (gap < 0).
Deterministic for a given seed, thread count and CPU.

    python -m w2sd_studies.shapes.finetune      # from models/base into models/ (~15 min)

The base model is the shipped ``models/base`` (``python -m w2sd_studies.shapes.train``
trains it: its ``strong`` output).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from w2sd_studies.shapes import models_dir
from w2sd_studies.shapes.minority import RED_SHARE, draws
from w2sd_studies.shapes.render import render
from w2sd_studies.shapes.train import (
    MAX_LENGTH,
    Data,
    Denoiser,
    Schedule,
    encode_all,
    log,
    save_pipeline,
    train_denoiser,
)


def finetune(
    init: Path, out: Path, red_share: float, args: argparse.Namespace, seed: int, steps: int
) -> None:
    vae = AutoencoderKL.from_pretrained(init / "vae").eval()
    tokenizer = CLIPTokenizer.from_pretrained(init / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(init / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(init / "unet")
    # The same draws and render jitter for every model (data seed fixed): only the
    # colours the bias moves differ between two models' data sets.
    rng = np.random.default_rng(args.data_seed)
    drawn = draws(rng, args.images, args.layout_fraction)
    examples = [d.caption(red_share) for d in drawn]
    images = np.stack([render(scene, rng) for scene, _ in examples])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        latents = encode_all(vae, x) * vae.config.scaling_factor
    ids = tokenizer(
        [caption for _, caption in examples] + [""],
        padding="max_length",
        max_length=MAX_LENGTH,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    layout = sum(d.layout for d in drawn)
    log(
        f"{out.name}: red share {red_share}, {len(examples)} images, {layout} layout "
        f"captions, training seed {seed}"
    )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_denoiser(
        Denoiser(text_encoder, unet),
        Data(latents, ids[:-1], ids[-1]),
        Schedule(steps=steps, batch=args.batch, lr=args.lr, warmup=100),
        gen,
    )
    save_pipeline(out, vae, text_encoder, tokenizer, unet)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--init",
        default=str(models_dir() / "base"),
        help="the base diffusers folder to start from (default: the shipped models/base)",
    )
    ap.add_argument("--out", default="python/w2sd_studies/shapes/models")
    ap.add_argument(
        "--models",
        default=",".join(RED_SHARE),
        help=f"which to train, comma-separated (default: all of {', '.join(RED_SHARE)})",
    )
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--layout-fraction", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=1500, help="the strong model's steps")
    ap.add_argument(
        "--weak-steps",
        type=int,
        default=600,
        help="each weak model's steps, continuing from the strong model (default 600)",
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="the strong model's training seed")
    ap.add_argument("--weak-seed", type=int, default=1, help="the weak models' training seed")
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in RED_SHARE]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(RED_SHARE)})")
    init = Path(args.init)
    if not (init / "unet").is_dir():
        ap.error(f"--init: {init} is no diffusers folder (no unet/)")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    for name in names:
        strong = name == "strong"
        if not strong and not (out / "strong" / "unet").is_dir():
            ap.error(f"{name} continues from the strong model: train strong first ({out})")
        seed, steps = (args.seed, args.steps) if strong else (args.weak_seed, args.weak_steps)
        tmp = out / f".{name}.partial"
        finetune(init if strong else out / "strong", tmp, RED_SHARE[name], args, seed, steps)
        if (out / name).exists():
            shutil.rmtree(out / name)
        tmp.rename(out / name)


if __name__ == "__main__":
    main()
