"""Locate ONNX Runtime's shared library inside an installed wheel, without importing it.

The core loads one ONNX Runtime library per process (``find_ort_library``):
``$W2SD_ORT_LIBRARY``; else the OpenVINO build that ``scripts/setup.sh`` installs beside the
``onnxruntime`` module (``<venv>/opt/onnxruntime-openvino``, never imported: its CPU and
OpenVINO execution providers) for a process whose first backend is ``openvino``; else the
library of the installed ``onnxruntime`` / ``onnxruntime-gpu`` package (what the Python
module, export and the ``ort-python`` baseline run on).

The OpenVINO build cannot come second: after the Python ``onnxruntime`` module has made a
session, the OpenVINO build's first session crashed the process (segfault, reproduced with
onnxruntime 1.32 and onnxruntime-openvino 1.24.1). The other order works. So the OpenVINO
build is chosen only while the module is not imported, and loading it once the module is
imported is refused with the reason (``refuse_second_flavour``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .errors import BackendError, NotFoundError

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


# The automatic choice, made once per process (the core loads one library).
_CHOSEN: Path | None = None


def find_ort_library(backend: str | None = None) -> Path:
    """The ONNX Runtime library this process's core runs on: $W2SD_ORT_LIBRARY; else, chosen
    at the first call, the OpenVINO build beside the package when `backend` is "openvino"
    and this process has not imported the onnxruntime module; else
    capi/libonnxruntime.so.* of the onnxruntime(-gpu) package."""
    global _CHOSEN
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise NotFoundError(f"{ENV_VAR}={override}: no such file")
        return path
    if _CHOSEN is None:
        side = openvino_library()
        usable = backend == "openvino" and "onnxruntime" not in sys.modules
        _CHOSEN = side if usable and side is not None else package_ort_library()
    return _CHOSEN


def refuse_second_flavour(library: Path) -> None:
    """Raise BackendError instead of loading the OpenVINO build into a process that has
    imported the onnxruntime module (the two crashed together in that order)."""
    side = openvino_library()
    if side is not None and library == side and "onnxruntime" in sys.modules:
        raise BackendError(
            f"the OpenVINO build of ONNX Runtime ({library}) cannot be loaded after this "
            "process imported the onnxruntime Python module (the two crash together in that "
            "order): ask for backend 'openvino' before anything imports onnxruntime (export, "
            "`w2sd build --backend cpu`), or use a process of its own"
        )


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
