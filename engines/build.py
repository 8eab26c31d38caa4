"""Engine building entry point: one function per backend, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from w2sd.errors import InvalidArgumentError
from w2sd.manifest import load_manifest

from .cpu import build_cpu
from .cuda import build_cuda
from .tensorrt import build_tensorrt

BUILDERS = {"cpu": build_cpu, "cuda": build_cuda, "tensorrt": build_tensorrt}


def build_engine(
    engine_dir: str, backend: str, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    if backend not in BUILDERS:
        raise InvalidArgumentError(
            f"backend: unknown backend {backend!r} (buildable: {', '.join(BUILDERS)})"
        )
    return BUILDERS[backend](load_manifest(engine_dir), log=log)
