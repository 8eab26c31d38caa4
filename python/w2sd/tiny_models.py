"""Deterministic tiny diffusers pipelines, built locally (no download).

Tests and ``w2sd demo`` use them. Each call with the same arguments writes the
same weights: every module is initialised from its own fixed seed. The strong
and weak pipelines share the text encoder and VAE (same seed) and differ in
their UNet seed, which is the "weight gap" of the paper in miniature.

Requires torch, diffusers and transformers (the export/reference extras).
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_HIDDEN = 32
MAX_LENGTH = 77

# A small word list from which the tokenizer's merges are derived; any other
# word still tokenizes (byte-level fallback), just into more pieces.
_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "photo",
    "painting",
    "portrait",
    "picture",
    "of",
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "white",
    "bicycle",
    "cat",
    "dog",
    "horse",
    "astronaut",
    "riding",
    "city",
    "mountain",
    "sea",
    "sky",
    "tree",
    "house",
    "car",
    "street",
    "night",
    "day",
    "sunset",
    "forest",
    "river",
    "beautiful",
    "detailed",
    "high",
    "quality",
    "blurry",
    "ugly",
    "low",
]


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable-character table used by CLIP/GPT-2 byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def write_tiny_clip_tokenizer(folder: Path) -> None:
    """Write ``vocab.json``, ``merges.txt`` and configs of a tiny CLIP BPE tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab[tok] = len(vocab)
    merges: list[str] = []
    for word in _WORDS:
        # Merge each word left to right: "r e" -> "re", "re d</w>" -> "red</w>".
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            rule = f"{pieces[0]} {pieces[1]}"
            if rule not in merges:
                merges.append(rule)
                vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = dict(special, model_max_length=MAX_LENGTH, tokenizer_class="CLIPTokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def _tokenizer_ids(folder: Path) -> tuple[int, int, int]:
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    return vocab["<|startoftext|>"], vocab["<|endoftext|>"], len(vocab)


def build_tiny_sd_pipeline(out_dir: str | Path, unet_seed: int, shared_seed: int = 0) -> Path:
    """Save a tiny SD-1.x-architecture pipeline as an ordinary diffusers folder.

    ``unet_seed`` sets the UNet's weights; ``shared_seed`` sets the text encoder
    and VAE, so two pipelines with the same shared seed are a compatible pair.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    if (out / "model_index.json").exists():
        return out
    tok_dir = out / "tokenizer"
    write_tiny_clip_tokenizer(tok_dir)
    bos, eos, vocab_size = _tokenizer_ids(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    torch.manual_seed(unet_seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(shared_seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(shared_seed + 1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=3,
            projection_dim=TEXT_HIDDEN,
            vocab_size=vocab_size,
            max_position_embeddings=MAX_LENGTH,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_pair(root: str | Path) -> tuple[Path, Path]:
    """The default demo/test pair: two tiny SD-1.x pipelines with different UNets."""
    root = Path(root)
    strong = build_tiny_sd_pipeline(root / "tiny-sd-strong", unet_seed=1)
    weak = build_tiny_sd_pipeline(root / "tiny-sd-weak", unet_seed=2)
    return strong, weak
