"""PyTorch module -> ONNX file, one model at a time, with external weights.

Every artifact is written as ``NAME/model.onnx`` plus ``NAME/model.onnx.data``
(weights as external data, relative location): this sidesteps protobuf's 2 GB
limit for real UNets (an SD 1.5 UNet is 3.4 GB in fp32) and keeps the engine
dir relocatable.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

OPSET = 17
DATA_SUFFIX = ".data"

# Input/output names the runtime binds to (recorded in the manifest).
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states")
UNET_ADDED_INPUTS = ("text_embeds", "time_ids")  # SDXL
UNET_OUTPUTS = ("out_sample",)
TEXT_INPUTS = ("input_ids",)
TEXT_HIDDEN_OUTPUT = "hidden_states"
TEXT_POOLED_OUTPUT = "text_embeds"
VAE_INPUTS = ("latent_sample",)
VAE_OUTPUTS = ("sample",)


class UnetForExport(torch.nn.Module):
    """(sample, timestep[1] float32, encoder_hidden_states[, text_embeds, time_ids]) -> output."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None):  # type: ignore[no-untyped-def]
        added = None
        if text_embeds is not None:
            added = {"text_embeds": text_embeds, "time_ids": time_ids}
        return self.unet(
            sample, timestep, encoder_hidden_states, added_cond_kwargs=added, return_dict=False
        )[0]


class TextEncoderForExport(torch.nn.Module):
    """input_ids -> hidden states (the last layer's, or the penultimate one as SDXL uses)
    [, pooled projection ``text_embeds`` for SDXL's second encoder]."""

    def __init__(self, text_encoder: torch.nn.Module, hidden: str, pooled: bool) -> None:
        super().__init__()
        if hidden not in ("last", "penultimate"):
            raise ValueError(f"hidden must be 'last' or 'penultimate', got {hidden!r}")
        self.text_encoder = text_encoder
        self.hidden = hidden
        self.pooled = pooled

    def forward(self, input_ids):  # type: ignore[no-untyped-def]
        out = self.text_encoder(input_ids, output_hidden_states=self.hidden == "penultimate")
        states = out[0] if self.hidden == "last" else out.hidden_states[-2]
        if self.pooled:
            return states, out[0] if self.hidden == "penultimate" else out.text_embeds
        return states

    @property
    def output_names(self) -> tuple[str, ...]:
        return (TEXT_HIDDEN_OUTPUT, TEXT_POOLED_OUTPUT) if self.pooled else (TEXT_HIDDEN_OUTPUT,)


class VaeDecoderForExport(torch.nn.Module):
    """Scaled latents (already divided by scaling_factor) -> image in [-1, 1]."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):  # type: ignore[no-untyped-def]
        return self.vae.decode(latent_sample, return_dict=False)[0]


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    out_path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    import onnx

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            # The tracer warns about Python bools taken from tensor shapes in
            # diffusers' upsampling; those shapes are fixed by size_multiple.
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    module,
                    args,
                    str(raw),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
        model = onnx.load(str(raw), load_external_data=True)
        for stale in out_path.parent.glob(out_path.name + "*"):
            stale.unlink()
        onnx.save_model(
            model,
            str(out_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=out_path.name + DATA_SUFFIX,
            size_threshold=1024,
        )


def unet_example_inputs(
    unet: torch.nn.Module, batch: int, latent_hw: int, text_len: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random inputs with the UNet's own shapes (SDXL's added conditions included)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = unet.config
    inputs = {
        "sample": torch.randn(batch, cfg.in_channels, latent_hw, latent_hw, generator=gen),
        "timestep": torch.tensor([501.0]),
        "encoder_hidden_states": torch.randn(
            batch, text_len, cfg.cross_attention_dim, generator=gen
        ),
    }
    added = unet_added_dims(unet)
    if added is not None:
        pooled_dim, ids_dim = added
        inputs["text_embeds"] = torch.randn(batch, pooled_dim, generator=gen)
        inputs["time_ids"] = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(batch, 1)
        assert ids_dim == 6
    return inputs


def unet_added_dims(unet: torch.nn.Module) -> tuple[int, int] | None:
    """(pooled text_embeds dim, time_ids dim) for SDXL's "text_time" UNets, else None."""
    cfg = unet.config
    if cfg.addition_embed_type is None:
        return None
    if cfg.addition_embed_type != "text_time":
        raise ValueError(f"unsupported UNet addition_embed_type {cfg.addition_embed_type!r}")
    ids_dim = 6  # (orig_h, orig_w, crop_top, crop_left, target_h, target_w)
    pooled = cfg.projection_class_embeddings_input_dim - ids_dim * cfg.addition_time_embed_dim
    return int(pooled), ids_dim


def export_unet(
    unet: torch.nn.Module, out_path: Path, latent_hw: int, text_len: int
) -> tuple[str, ...]:
    """Export; returns the input names (3 for SD, 5 for SDXL)."""
    inputs = unet_example_inputs(unet, 2, latent_hw, text_len)
    names = tuple(inputs)
    axes = {
        "sample": {0: "batch", 2: "height", 3: "width"},
        "encoder_hidden_states": {0: "batch"},
        "out_sample": {0: "batch", 2: "height", 3: "width"},
    }
    if "text_embeds" in inputs:
        axes.update(text_embeds={0: "batch"}, time_ids={0: "batch"})
    _export(UnetForExport(unet).eval(), tuple(inputs.values()), out_path, names, UNET_OUTPUTS, axes)
    return names


def export_text_encoder(wrapper: TextEncoderForExport, out_path: Path, text_len: int) -> None:
    args = (torch.zeros(1, text_len, dtype=torch.int64),)
    axes = {name: {0: "batch"} for name in (*TEXT_INPUTS, *wrapper.output_names)}
    _export(wrapper.eval(), args, out_path, TEXT_INPUTS, wrapper.output_names, axes)


def export_vae_decoder(vae: torch.nn.Module, out_path: Path, latent_hw: int) -> None:
    args = (torch.randn(1, vae.config.latent_channels, latent_hw, latent_hw),)
    axes = {
        "latent_sample": {0: "batch", 2: "height", 3: "width"},
        "sample": {0: "batch", 2: "height", 3: "width"},
    }
    _export(VaeDecoderForExport(vae).eval(), args, out_path, VAE_INPUTS, VAE_OUTPUTS, axes)


def relative_max_diff(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual - reference| / max |reference| (the spec's parity measure)."""
    scale = float(np.abs(reference).max())
    return float(np.abs(actual - reference).max()) / (scale if scale > 0 else 1.0)


def check_against_torch(onnx_path: Path, module: torch.nn.Module, inputs: dict[str, Any]) -> float:
    """Run the ONNX file with ONNX Runtime and its PyTorch module on the same inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        expected = module(*inputs.values())
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        e = e.numpy()
        if a.shape != e.shape:
            raise RuntimeError(f"{onnx_path}: output shape {a.shape} != torch {e.shape}")
        worst = max(worst, relative_max_diff(a, e))
    return worst
