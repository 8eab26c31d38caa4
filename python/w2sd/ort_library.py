"""Locate ONNX Runtime's shared library inside an installed wheel, without importing it.

The core loads one ONNX Runtime library per process (``find_ort_library``):
``$W2SD_ORT_LIBRARY``, else the library of the installed ``onnxruntime`` /
``onnxruntime-gpu`` package (what the Python module, export and the ``ort-python`` baseline
run on). Backend ``openvino`` runs on OpenVINO's own library instead
(``w2sd.openvino_library``)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import NotFoundError

ENV_VAR = "W2SD_ORT_LIBRARY"


def _library_in(capi: Path) -> Path | None:
    candidates = sorted(capi.glob("libonnxruntime.so*")) + sorted(capi.glob("onnxruntime.dll"))
    candidates += sorted(capi.glob("libonnxruntime*.dylib"))
    # The versioned file (libonnxruntime.so.1.x.y) is the real library.
    return max(candidates, key=lambda p: len(p.name)) if candidates else None


def find_ort_library() -> Path:
    """The ONNX Runtime library this process's core runs on: $W2SD_ORT_LIBRARY, else
    capi/libonnxruntime.so.* of the onnxruntime(-gpu) package."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise NotFoundError(f"{ENV_VAR}={override}: no such file")
        return path
    return package_ort_library()


def package_ort_library() -> Path:
    """capi/libonnxruntime.so.* of the installed onnxruntime(-gpu) package (the library
    beside the Python module, whatever $W2SD_ORT_LIBRARY says)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "ONNX Runtime is not installed: `pip install w2sd-runtime[cpu]` (onnxruntime) or "
            "`pip install w2sd-runtime[gpu]` (onnxruntime-gpu: CUDA/TensorRT)"
        )
    for location in spec.submodule_search_locations:
        found = _library_in(Path(location) / "capi")
        if found is not None:
            return found
    raise NotFoundError(
        f"no libonnxruntime shared library in the onnxruntime package at "
        f"{list(spec.submodule_search_locations)}; set {ENV_VAR} to its path"
    )
