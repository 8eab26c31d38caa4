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
from typing import Any

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
    # Printable bytes first, as CLIP's table orders them (so '!' is token 0).
    return table


def write_tiny_clip_tokenizer(
    folder: Path,
    pad_token: str = "<|endoftext|>",
    words: list[str] | None = None,
    max_length: int = MAX_LENGTH,
) -> None:
    """Write ``vocab.json``, ``merges.txt`` and configs of a tiny CLIP BPE tokenizer.

    ``pad_token`` is "<|endoftext|>" as in SD 1.x's tokenizer, or "!" as in the
    OpenCLIP tokenizers of SD 2.x and SDXL's second encoder. ``words`` replaces the
    built-in word list the merges come from."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab[tok] = len(vocab)
    merges: list[str] = []
    for word in _WORDS if words is None else words:
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
        "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = dict(special, model_max_length=max_length, tokenizer_class="CLIPTokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def tokenizer_ids(folder: Path) -> tuple[int, int, int]:
    """(bos, eos, vocabulary size) of a CLIP tokenizer folder."""
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    return vocab["<|startoftext|>"], vocab["<|endoftext|>"], len(vocab)


def _tiny_text_config(
    tok_dir: Path, projection_dim: int = TEXT_HIDDEN, hidden_size: int = TEXT_HIDDEN
) -> Any:
    from transformers import CLIPTextConfig

    bos, eos, vocab_size = tokenizer_ids(tok_dir)
    return CLIPTextConfig(
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=3,
        projection_dim=projection_dim,
        vocab_size=vocab_size,
        max_position_embeddings=MAX_LENGTH,
    )


def _tiny_vae(seed: int, scaling_factor: float = 0.18215) -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _tiny_unet(seed: int, **config: Any) -> Any:
    """A two-level UNet (one upsampler) in the shape of diffusers' tiny test UNets."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
        **config,
    )


def sd_ddim_scheduler(prediction_type: str = "epsilon") -> Any:
    """SD 1.x/SDXL's DDIM scheduler settings (v_prediction: SD 2.x's)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )


def build_tiny_sd_pipeline(
    out_dir: str | Path,
    unet_seed: int,
    shared_seed: int = 0,
    variant: str = "sd1",
    text_seed: int | None = None,
) -> Path:
    """Save a tiny SD-1.x (``variant="sd1"``) or SD-2.x (``"sd2"``: v-prediction,
    linear attention projections, "!" padding) pipeline as an ordinary diffusers folder.

    ``unet_seed`` sets the UNet's weights; ``shared_seed`` sets the text encoder
    and VAE, so two pipelines with the same shared seed are a compatible pair;
    ``text_seed`` gives the text encoder seeds of its own (a fine-tune that ships its
    own CLIP weights, as DreamShaper or Juggernaut-XL do).
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    if variant not in ("sd1", "sd2"):
        raise ValueError(f"variant must be 'sd1' or 'sd2', got {variant!r}")
    sd2 = variant == "sd2"
    out = Path(out_dir)
    if (out / "model_index.json").exists():
        return out
    tok_dir = out / "tokenizer"
    write_tiny_clip_tokenizer(tok_dir, pad_token="!" if sd2 else "<|endoftext|>")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    unet = _tiny_unet(
        unet_seed,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2,
    )
    vae = _tiny_vae(shared_seed)
    torch.manual_seed(shared_seed + 1 if text_seed is None else text_seed)
    text_encoder = CLIPTextModel(_tiny_text_config(tok_dir))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd_ddim_scheduler("v_prediction" if sd2 else "epsilon"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_sdxl_pipeline(
    out_dir: str | Path,
    unet_seed: int,
    shared_seed: int = 0,
    text_seed: int | None = None,
    text_hidden_2: int = TEXT_HIDDEN,
) -> Path:
    """Save a tiny SDXL-architecture pipeline (two text encoders, text_embeds/time_ids),
    shaped like diffusers' own tiny SDXL test configuration. ``text_seed`` seeds both
    text encoders (default: from ``shared_seed``). ``text_hidden_2``: the second encoder's
    width; a width unlike the first's (as SDXL's 1280 vs 768) lets diffusers' single-file
    loader tell the two encoders apart, which it does by width alone."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out = Path(out_dir)
    if (out / "model_index.json").exists():
        return out
    write_tiny_clip_tokenizer(out / "tokenizer")
    write_tiny_clip_tokenizer(out / "tokenizer_2", pad_token="!")
    unet = _tiny_unet(
        unet_seed,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # 6 time ids x 8 + the pooled projection of encoder 2
        projection_class_embeddings_input_dim=6 * 8 + text_hidden_2,
        cross_attention_dim=TEXT_HIDDEN + text_hidden_2,
    )
    vae = _tiny_vae(shared_seed, scaling_factor=0.13025)
    text_base = shared_seed + 1 if text_seed is None else text_seed
    torch.manual_seed(text_base)
    text_encoder = CLIPTextModel(_tiny_text_config(out / "tokenizer"))
    torch.manual_seed(text_base + 1)
    text_encoder_2 = CLIPTextModelWithProjection(
        _tiny_text_config(out / "tokenizer_2", text_hidden_2, text_hidden_2)
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(out / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(out / "tokenizer_2"),
        unet=unet,
        scheduler=sd_ddim_scheduler(),
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def make_tiny_lora(
    pipeline_dir: str | Path,
    out_file: str | Path,
    seed: int,
    fmt: str = "diffusers",
    rank: int = 4,
) -> Path:
    """Write a random rank-`rank` LoRA for a pipeline's UNet attention projections (tiny
    pipelines in the tests; any size for the benchmarks).

    ``fmt="diffusers"``: peft/diffusers keys (``unet.…lora_A.weight``), as
    ``save_lora_weights`` writes them; ``fmt="kohya"``: kohya/A1111 keys
    (``lora_unet_…lora_down.weight`` with ``.alpha``).
    """
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(Path(pipeline_dir) / "unet")
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    state = {
        k: v.detach().clone().contiguous() * 0.5 for k, v in get_peft_model_state_dict(unet).items()
    }
    if fmt == "diffusers":
        tensors = {f"unet.{k}": v for k, v in state.items()}
    elif fmt == "kohya":
        tensors = {}
        for k, v in state.items():
            module, kind = k.rsplit(".lora_", 1)
            base = "lora_unet_" + module.replace(".", "_")
            tensors[base + (".lora_down.weight" if kind.startswith("A") else ".lora_up.weight")] = v
            tensors[base + ".alpha"] = torch.tensor(float(rank))
    else:
        raise ValueError(f"fmt must be 'diffusers' or 'kohya', got {fmt!r}")
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    return out


def build_tiny_pair(root: str | Path) -> tuple[Path, Path]:
    """The default demo/test pair: two tiny SD-1.x pipelines with different UNets."""
    root = Path(root)
    strong = build_tiny_sd_pipeline(root / "tiny-sd-strong", unet_seed=1)
    weak = build_tiny_sd_pipeline(root / "tiny-sd-weak", unet_seed=2)
    return strong, weak
