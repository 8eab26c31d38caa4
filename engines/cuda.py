"""``w2sd build ENGINE_DIR --backend cuda``: fp16 models for ONNX Runtime's CUDA EP.

Weights and arithmetic in fp16, inputs and outputs kept float32 (the loop's latents and
the kernels stay fp32; ONNX Runtime casts at the graph boundary). The timestep
embeddings and attention softmax stay float32 inside the fp16 graph, and the VAE decoder
stays float32 where the pipeline needs it (``fp16.py``). Runs on any machine (a graph
transform); sampling needs a CUDA device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest

from .common import build_converted, model_sources
from .fp16 import convert_fp16, copy_fp32, model_precisions

BACKEND = "cuda"


def build_cuda(manifest: Manifest, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``cuda/`` (fp16 models; fp32 where they must be) in the engine dir and record
    it in the manifest."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    precisions = model_precisions(manifest)
    kept: dict[str, int] = {}

    def convert(src: Path, dst: Path) -> None:
        name = dst.parent.name
        fn = convert_fp16 if precisions[name] == "fp16" else copy_fp32
        kept[name] = fn(src, dst)

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
        io="float32",
    )
