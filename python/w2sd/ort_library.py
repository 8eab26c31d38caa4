"""Locate ONNX Runtime's shared library inside an installed wheel, without importing it.

Order: ``$W2SD_ORT_LIBRARY``, then the library of the installed ``onnxruntime`` /
``onnxruntime-gpu`` / ``onnxruntime-openvino`` package.

``scripts/setup.sh`` also installs the OpenVINO wheel's library beside the ``onnxruntime``
module (``<venv>/opt/onnxruntime-openvino``, never imported): point ``W2SD_ORT_LIBRARY`` at
it (``openvino_library()``) to run ``--backend openvino`` (and ``cpu``) on it. Do not import
the Python ``onnxruntime`` module in such a process: two ONNX Runtime builds with
OpenVINO's provider library in one process crashed or hung here."""

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


def openvino_library() -> Path | None:
    """The OpenVINO wheel's library installed beside the package by scripts/setup.sh."""
    return _library_in(SIDE_OPENVINO) if SIDE_OPENVINO.is_dir() else None


def find_ort_library() -> Path:
    """$W2SD_ORT_LIBRARY, else capi/libonnxruntime.so.* of the onnxruntime(-gpu) package."""
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


def openvino_cache_support(library: Path) -> tuple[bool, str]:
    """(whether OpenVINO can read back the compiled models it caches, why not).

    OpenVINO's CPU plugin exports a compiled model as OpenVINO IR, and reading it back
    needs the IR frontend library beside the plugin. The onnxruntime-openvino 1.24.1 wheel
    ships only the ONNX frontend: every cached load then fails, compiles again and rewrites
    the whole cache file, slower than no cache at all."""
    capi = library.parent
    if (
        any(capi.glob("libopenvino_ir_frontend.so*"))
        or (capi / "openvino_ir_frontend.dll").exists()
    ):
        return True, ""
    return False, (
        f"{capi} has no libopenvino_ir_frontend: OpenVINO could not read back what it "
        "caches (each load would compile again and rewrite the cache)"
    )
