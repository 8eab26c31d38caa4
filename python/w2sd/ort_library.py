"""Locate ONNX Runtime's shared library inside an installed wheel, without importing it.

Order: ``$W2SD_ORT_LIBRARY``; then the OpenVINO wheel's library installed beside the
package's own ONNX Runtime (``<venv>/opt/onnxruntime-openvino``, as ``scripts/setup.sh``
does: it has the CPU and the OpenVINO execution providers, and is never imported as a
Python module, so it does not clash with the ``onnxruntime`` wheel); then the library of
the installed ``onnxruntime`` / ``onnxruntime-gpu`` / ``onnxruntime-openvino`` package."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .errors import NotFoundError

ENV_VAR = "W2SD_ORT_LIBRARY"
SIDE_OPENVINO = Path(sys.prefix) / "opt" / "onnxruntime-openvino" / "onnxruntime" / "capi"


def _library_in(capi: Path) -> Path | None:
    candidates = sorted(capi.glob("libonnxruntime.so*")) + sorted(capi.glob("onnxruntime.dll"))
    candidates += sorted(capi.glob("libonnxruntime*.dylib"))
    # The versioned file (libonnxruntime.so.1.x.y) is the real library.
    return max(candidates, key=lambda p: len(p.name)) if candidates else None


def find_ort_library() -> Path:
    """$W2SD_ORT_LIBRARY, else capi/libonnxruntime.so.* of the onnxruntime(-gpu) package."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise NotFoundError(f"{ENV_VAR}={override}: no such file")
        return path
    side = _library_in(SIDE_OPENVINO) if SIDE_OPENVINO.is_dir() else None
    if side is not None:
        return side
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
