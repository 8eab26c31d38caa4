"""PyTorch module -> ONNX file, one model at a time, with external weights.

Every artifact is written as ``NAME/model.onnx`` plus ``NAME/model.onnx.data``
(weights as external data, relative location): this sidesteps protobuf's 2 GB
limit for real UNets (an SD 1.5 UNet is 3.4 GB in fp32) and keeps the engine
dir relocatable.
"""

from __future__ import annotations

import shutil
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
UNET_OUTPUTS = ("out_sample",)
TEXT_INPUTS = ("input_ids",)
TEXT_OUTPUTS = ("last_hidden_state",)
VAE_INPUTS = ("latent_sample",)
VAE_OUTPUTS = ("sample",)


class UnetForExport(torch.nn.Module):
    """(sample, timestep[1] float32, encoder_hidden_states) -> model output."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):  # type: ignore[no-untyped-def]
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class TextEncoderForExport(torch.nn.Module):
    """input_ids -> last_hidden_state (SD 1.x/2.x conditioning)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):  # type: ignore[no-untyped-def]
        return self.text_encoder(input_ids, return_dict=False)[0]


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


def export_unet(unet: torch.nn.Module, out_path: Path, latent_hw: int, text_len: int) -> None:
    c = unet.config.in_channels
    dim = unet.config.cross_attention_dim
    args = (
        torch.randn(2, c, latent_hw, latent_hw),
        torch.tensor([999.0], dtype=torch.float32),
        torch.randn(2, text_len, dim),
    )
    axes = {
        "sample": {0: "batch", 2: "height", 3: "width"},
        "encoder_hidden_states": {0: "batch"},
        "out_sample": {0: "batch", 2: "height", 3: "width"},
    }
    _export(UnetForExport(unet).eval(), args, out_path, UNET_INPUTS, UNET_OUTPUTS, axes)


def export_text_encoder(text_encoder: torch.nn.Module, out_path: Path, text_len: int) -> None:
    args = (torch.zeros(1, text_len, dtype=torch.int64),)
    axes = {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    _export(
        TextEncoderForExport(text_encoder).eval(), args, out_path, TEXT_INPUTS, TEXT_OUTPUTS, axes
    )


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
    actual = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    if actual.shape != expected.shape:
        raise RuntimeError(f"{onnx_path}: output shape {actual.shape} != torch {expected.shape}")
    return relative_max_diff(actual, expected)


def copy_tree_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)
