"""``w2sd build ENGINE_DIR --backend cuda``: fp16 models for ONNX Runtime's CUDA EP.

Every model of an SD-family engine is first fused by ONNX Runtime's own SD optimizer
(``sd_fusion.py``: MultiHeadAttention, GroupNorm, BiasSplitGelu, NhwcConv, ...), then
converted to fp16 weights and arithmetic with float32 inputs and outputs (``fp16.py``).
The fused attention kernels accumulate in float32, so the timestep embeddings are the
only float32 island left; a v-prediction SD 2.x UNet keeps its attention float32 (its
scores overflow fp16 attention kernels: black images), and the VAE decoder stays float32
where the pipeline needs it. The fused-operator counts are recorded per model, and a UNet
whose attentions were not all fused is refused. A plain ONNX denoiser is converted
unfused. Runs on any machine (a graph transform); sampling needs a CUDA device.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest

from .common import build_converted, model_kind, model_sources
from .fp16 import convert_fp16, copy_fp32, model_precisions
from .sd_fusion import check_unet_fusion, fuse_model

BACKEND = "cuda"


def build_cuda(manifest: Manifest, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``cuda/`` (fp16 models; fp32 where they must be) in the engine dir and record
    it in the manifest."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    precisions = model_precisions(manifest)
    fp32_attention = attention_keeps_fp32(manifest)
    kept: dict[str, int] = {}
    fused: dict[str, dict[str, int]] = {}

    # ONNX Runtime's SD optimizer knows SD's graphs; a plain ONNX denoiser is converted as is.
    sd_graphs = manifest.spec.family != "onnx"

    def convert(src: Path, dst: Path) -> None:
        name, kind = dst.parent.name, model_kind(dst.parent.name)
        staged = dst.parent.with_name(f"{name}.fused") / "model.onnx"
        try:
            if sd_graphs:
                fused[name] = fuse_model(src, staged, kind)
                if kind == "unet":
                    check_unet_fusion(name, fused[name])
            else:
                staged = src
            if precisions[name] == "fp16":
                kept[name] = convert_fp16(staged, dst, fp32_attention and kind == "unet")
            else:
                kept[name] = copy_fp32(staged, dst)
        finally:
            if sd_graphs:
                shutil.rmtree(staged.parent, ignore_errors=True)

    return build_converted(
        manifest,
        BACKEND,
        model_sources(manifest),
        convert,
        log,
        "fp16",
        precision="fp16",
        model_precision=precisions,
        fp32_nodes=kept,
        fused_ops=fused,
        fp32_attention=fp32_attention,
        io="float32",
        # UNet calls replay CUDA graphs (ONNX Runtime's enable_cuda_graph, one graph per lane
        # and input shape; w2sd.backend_options); W2SDRuntime(..., cuda_graphs=False) opts out.
        cuda_graphs=True,
    )


def attention_keeps_fp32(manifest: Manifest) -> bool:
    """A v-prediction SD 2.x UNet (``upcast_attention`` in diffusers) keeps its fused
    attention in float32."""
    spec = manifest.spec
    return spec.family == "sd" and spec.scheduler.prediction_type == "v_prediction"
