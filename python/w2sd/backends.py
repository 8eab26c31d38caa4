"""Which inference backends this machine can run, and why the others cannot."""

from __future__ import annotations

from dataclasses import dataclass

from . import gpu_libraries
from .errors import BackendError, InvalidArgumentError, W2SDError
from .native import core
from .ort_library import find_ort_library, openvino_library

BACKENDS = ("cpu", "openvino", "cuda", "tensorrt")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not; "" when available


def _load_library() -> str | None:
    """Load ONNX Runtime's library into the core (after the NVIDIA libraries a GPU build
    needs); the reason it failed, or None."""
    try:
        library = find_ort_library()
        gpu_libraries.preload_gpu_libraries(library)
        core().load_ort_library(str(library))
    except W2SDError as e:
        return f"ONNX Runtime library unavailable: {e}"
    except ImportError as e:
        return f"the compiled core w2sd._core does not import: {e}"
    return None


def backend_status() -> list[BackendStatus]:
    """Every known backend, with whether it is available here and, if not, why."""
    failure = _load_library()
    if failure is not None:
        return [BackendStatus(b, False, failure) for b in BACKENDS]
    result = []
    for b in BACKENDS:
        available, reason = core().backend_availability(b)
        side = openvino_library()
        if b == "openvino" and not available and side is not None:
            reason += f"; or run with W2SD_ORT_LIBRARY={side}"
        if b in ("cuda", "tensorrt") and not available and gpu_libraries.LAST_REPORT.gpu_build:
            why = gpu_libraries.provider_load_error(find_ort_library(), b)
            missing = gpu_libraries.LAST_REPORT.summary()
            reason += "".join(f"; {x}" for x in (why, missing) if x)
        result.append(BackendStatus(b, bool(available), str(reason)))
    return result


def available_backends() -> list[str]:
    """Backends this machine can run (``backend_status`` says why the others cannot)."""
    return [s.name for s in backend_status() if s.available]


def require_backend(backend: str) -> None:
    """Raise InvalidArgumentError for an unknown backend, BackendError (with the reason)
    for one this machine cannot run."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"backend: unknown backend {backend!r} (known: {', '.join(BACKENDS)})",
            param="backend",
        )
    status = {s.name: s for s in backend_status()}[backend]
    if not status.available:
        raise BackendError(f"backend {backend!r} is not available on this machine: {status.reason}")
