"""Locate ONNX Runtime's shared library inside the installed wheel, without importing it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import NotFoundError

ENV_VAR = "W2SD_ORT_LIBRARY"


def find_ort_library() -> Path:
    """$W2SD_ORT_LIBRARY, else capi/libonnxruntime.so.* of the onnxruntime(-gpu) package."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise NotFoundError(f"{ENV_VAR}={override}: no such file")
        return path
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "ONNX Runtime is not installed: `pip install w2sd-runtime[cpu]` (onnxruntime) or "
            "`pip install w2sd-runtime[gpu]` (onnxruntime-gpu: CUDA/TensorRT)"
        )
    for location in spec.submodule_search_locations:
        capi = Path(location) / "capi"
        candidates = sorted(capi.glob("libonnxruntime.so*")) + sorted(capi.glob("onnxruntime.dll"))
        candidates += sorted(capi.glob("libonnxruntime*.dylib"))
        if candidates:
            # The versioned file (libonnxruntime.so.1.x.y) is the real library.
            return max(candidates, key=lambda p: len(p.name))
    raise NotFoundError(
        f"no libonnxruntime shared library in the onnxruntime package at "
        f"{list(spec.submodule_search_locations)}; set {ENV_VAR} to its path"
    )
