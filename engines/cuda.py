"""``w2sd build ENGINE_DIR --backend cuda``: fp16 models for ONNX Runtime's CUDA EP.

Weights and arithmetic in fp16, inputs and outputs kept float32 (the loop's
latents and the kernels stay fp32; ONNX Runtime casts at the graph boundary).
Runs on any machine (a graph transform); sampling needs a CUDA device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest

from .common import build_converted
from .cpu import model_sources

BACKEND = "cuda"


def convert_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src), load_external_data=True)
    # Shape inference needs the whole model in one protobuf (< 2 GB); the
    # converter works without it.
    large = sum(len(t.raw_data) for t in model.graph.initializer) > 1_900_000_000
    model16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=large)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model16,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=dst.name + ".data",
        size_threshold=1024,
    )


def build_cuda(manifest: Manifest, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``cuda/`` (fp16 models) in the engine dir and record it in the manifest."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    return build_converted(
        manifest,
        BACKEND,
        model_sources(manifest),
        convert_fp16,
        log,
        "fp16",
        precision="fp16",
        io="float32",
    )
