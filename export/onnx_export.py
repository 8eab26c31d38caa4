"""PyTorch module -> ONNX file, one model at a time, with external weights.

Every artifact is written as ``NAME/model.onnx`` plus ``NAME/model.onnx.data``
(weights as external data, relative location): this sidesteps protobuf's 2 GB
limit for real UNets (an SD 1.5 UNet is 3.4 GB in fp32) and keeps the engine
dir relocatable.

Memory is bounded by the largest single model (``export_component``): the torch
module is traced without constant folding, its outputs on the verification inputs
are kept, and it is released before its weights are written out tensor by tensor
(folding the weight transposes the tracer leaves, one tensor at a time) and before a
session that reads them back checks the outputs. The torch module, a traced copy, a
serialized copy and an ONNX Runtime session of the same weights never coexist.
"""

from __future__ import annotations

import gc
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .onnx_weights import OPSET, write_weights

# Input/output names the runtime binds to (recorded in the manifest).
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states")
UNET_ADDED_INPUTS = ("text_embeds", "time_ids")  # SDXL
UNET_OUTPUTS = ("out_sample",)
LORA_SCALE_NAME = "lora_scale"  # the unfused LoRA's scale (export/lora_input.py)
TEXT_INPUTS = ("input_ids",)
TEXT_HIDDEN_OUTPUT = "hidden_states"
TEXT_POOLED_OUTPUT = "text_embeds"
VAE_INPUTS = ("latent_sample",)
VAE_OUTPUTS = ("sample",)


class UnetForExport(torch.nn.Module):
    """(sample, timestep[1] float32, encoder_hidden_states[, text_embeds, time_ids]
    [, lora_scale[1]]) -> output. ``lora`` is the LoraScale of a UNet whose LoRA was
    left unfused (lora_input.attach_lora_input); its scale is then the last input."""

    def __init__(self, unet: torch.nn.Module, lora: Any = None) -> None:
        super().__init__()
        self.unet = unet
        self._lora = lora

    def forward(self, sample, timestep, encoder_hidden_states, *rest):  # type: ignore[no-untyped-def]
        rest = list(rest)
        if self._lora is not None:
            self._lora.value = rest.pop()
        added = None
        if rest:
            added = {"text_embeds": rest[0], "time_ids": rest[1]}
        try:
            return self.unet(
                sample, timestep, encoder_hidden_states, added_cond_kwargs=added, return_dict=False
            )[0]
        finally:
            if self._lora is not None:
                self._lora.value = None


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
    """Trace `module` to ``out_path`` + one external data file, in about the module's own
    memory: the tracer writes the graph without weights (they stay graph inputs named by
    the module's parameters), then write_weights stores each tensor straight from the
    module. The caller's reference is the last one: `module` is freed on return."""
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
                    # Weights are written by write_weights, tensor by tensor; folding
                    # would compute a transposed copy of most of them at once.
                    export_params=False,
                    do_constant_folding=False,
                    dynamo=False,
                )
        model = onnx.load(str(raw))
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    for stale in out_path.parent.glob(out_path.name + "*"):
        stale.unlink()
    write_weights(model, tensors, len(input_names), out_path)
    del module, args, tensors
    gc.collect()


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


UNET_AXES = {
    "sample": {0: "batch", 2: "height", 3: "width"},
    "encoder_hidden_states": {0: "batch"},
    "text_embeds": {0: "batch"},
    "time_ids": {0: "batch"},
    "out_sample": {0: "batch", 2: "height", 3: "width"},
}
VAE_AXES = {
    "latent_sample": {0: "batch", 2: "height", 3: "width"},
    "sample": {0: "batch", 2: "height", 3: "width"},
}


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def fixed_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Pin glibc's mmap threshold (process-wide) so that large freed blocks go back to
    the system at once. By default glibc raises the threshold to the largest block freed
    so far, and tracing then serves many weight-sized temporaries from a heap that is
    never trimmed: the peak grew to 2x the weights in a 384 MiB test, 1.04x with this.
    Returns False where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


@dataclass
class Component:
    """One model to export: its wrapped module (built on demand, so that export owns it
    and can free it), its inputs by seed (seed 0 traces; check_seeds verify), its names."""

    build: Callable[[], torch.nn.Module]
    inputs: Callable[[torch.nn.Module, int], dict[str, torch.Tensor]]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    check_seeds: tuple[int, ...] = (1,)
    # Facts read from the module before it is freed (configs the manifest records).
    facts: Callable[[torch.nn.Module], dict[str, Any]] = field(default=lambda m: {})


@dataclass
class Exported:
    input_names: tuple[str, ...]
    facts: dict[str, Any]
    check: float | None  # worst relative diff vs torch over check_seeds; None: not verified


def export_component(c: Component, out_path: Path, verify: bool = True) -> Exported:
    """Build, trace, free, write and (if `verify`) check one model in bounded memory:
    torch's outputs on the check inputs are computed first, and the session that checks
    the written model opens only after the module is gone."""
    fixed_mmap_threshold()
    box = [c.build().eval()]
    facts = c.facts(box[0])
    trace = c.inputs(box[0], 0)
    names = tuple(trace)
    checks = [c.inputs(box[0], seed) for seed in c.check_seeds] if verify else []
    expected = []
    with torch.no_grad():
        for inputs in checks:
            out = box[0](*inputs.values())
            expected.append([t.numpy() for t in ((out,) if isinstance(out, torch.Tensor) else out)])
    axes = {k: v for k, v in c.dynamic_axes.items() if k in names or k in c.output_names}
    _export(box.pop(), tuple(trace.values()), out_path, names, c.output_names, axes)
    worst = compare_with_onnx(out_path, checks, expected) if verify else None
    return Exported(names, facts, worst)


def unet_component(
    build: Callable[[], torch.nn.Module],
    latent_hw: int,
    text_len: int,
    lora_scales: tuple[float, ...] = (),
    facts: Callable[[torch.nn.Module], dict[str, Any]] = lambda m: {},
) -> Component:
    """A UnetForExport; with `lora_scales`, a LoRA-scale input checked at each scale."""

    def inputs(wrapper: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
        x = unet_example_inputs(wrapper.unet, 2, latent_hw, text_len, seed=seed)
        if lora_scales:
            scale = lora_scales[(seed - 1) % len(lora_scales)] if seed else lora_scales[0]
            x[LORA_SCALE_NAME] = torch.tensor([scale], dtype=torch.float32)
        return x

    seeds = tuple(range(1, max(1, len(lora_scales)) + 1))
    return Component(build, inputs, UNET_OUTPUTS, UNET_AXES, check_seeds=seeds, facts=facts)


def text_encoder_component(
    build: Callable[[], TextEncoderForExport], text_len: int, pooled: bool
) -> Component:
    """A TextEncoderForExport (hidden states [, pooled embeddings]) on input_ids."""

    def inputs(wrapper: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
        if seed == 0:
            return {"input_ids": torch.zeros(1, text_len, dtype=torch.int64)}
        vocab = wrapper.text_encoder.config.vocab_size
        gen = torch.Generator().manual_seed(seed)
        return {"input_ids": torch.randint(0, vocab, (2, text_len), generator=gen)}

    def facts(wrapper: torch.nn.Module) -> dict[str, Any]:
        return {"hidden_size": int(wrapper.text_encoder.config.hidden_size)}

    outputs = (TEXT_HIDDEN_OUTPUT, TEXT_POOLED_OUTPUT) if pooled else (TEXT_HIDDEN_OUTPUT,)
    axes = {name: {0: "batch"} for name in (*TEXT_INPUTS, *outputs)}
    return Component(build, inputs, outputs, axes, facts=facts)


def vae_decoder_component(build: Callable[[], torch.nn.Module], latent_hw: int) -> Component:
    """A VaeDecoderForExport; its facts: latent_channels, scale (pixels per latent) and
    scaling_factor."""

    def inputs(wrapper: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
        c = wrapper.vae.config.latent_channels
        gen = torch.Generator().manual_seed(seed)
        return {"latent_sample": torch.randn(1, c, latent_hw, latent_hw, generator=gen)}

    def facts(wrapper: torch.nn.Module) -> dict[str, Any]:
        cfg = wrapper.vae.config
        return {
            "latent_channels": int(cfg.latent_channels),
            "scale": 2 ** (len(cfg.block_out_channels) - 1),
            "scaling_factor": float(cfg.scaling_factor),
            # diffusers' default when the config does not say
            "force_upcast": bool(getattr(cfg, "force_upcast", True)),
        }

    return Component(
        lambda: VaeDecoderForExport(build()), inputs, VAE_OUTPUTS, VAE_AXES, facts=facts
    )


def relative_max_diff(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual - reference| / max |reference| (the spec's parity measure)."""
    scale = float(np.abs(reference).max())
    return float(np.abs(actual - reference).max()) / (scale if scale > 0 else 1.0)


def compare_with_onnx(
    onnx_path: Path, inputs: list[dict[str, torch.Tensor]], expected: list[list[np.ndarray]]
) -> float:
    """Worst relative diff of the ONNX file's outputs (ONNX Runtime, CPU) vs `expected`.

    The session reads the weights as written (no graph optimisation, no pre-packed copies):
    this checks the file in about its own size of memory."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.add_session_config_entry("session.disable_prepacking", "1")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed, want in zip(inputs, expected, strict=True):
        got = session.run(None, {k: v.numpy() for k, v in feed.items()})
        for a, e in zip(got, want, strict=True):
            if a.shape != e.shape:
                raise RuntimeError(f"{onnx_path}: output shape {a.shape} != torch {e.shape}")
            diff = relative_max_diff(a, e)
            if not np.isfinite(diff):  # NaN/inf in either output: nothing was verified
                return float("inf")
            worst = max(worst, diff)
    return worst
