"""Engine building entry point: one function per backend, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from w2sd.errors import InvalidArgumentError
from w2sd.manifest import load_manifest

from .cpu import build_cpu
from .cuda import build_cuda
from .openvino import build_openvino
from .tensorrt import build_tensorrt

BUILDERS = {
    "cpu": build_cpu,
    "openvino": build_openvino,
    "cuda": build_cuda,
    "tensorrt": build_tensorrt,
}


def build_engine(
    engine_dir: str,
    backend: str,
    log: Callable[[str], None] | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Build `backend`'s artifacts into the engine dir; `precision` is openvino's choice."""
    if backend not in BUILDERS:
        raise InvalidArgumentError(
            f"backend: unknown backend {backend!r} (buildable: {', '.join(BUILDERS)})"
        )
    if precision is not None and backend != "openvino":
        raise InvalidArgumentError("--precision applies to --backend openvino only")
    manifest = load_manifest(engine_dir)
    if backend == "openvino":
        return build_openvino(manifest, log=log, precision=precision)
    return BUILDERS[backend](manifest, log=log)
