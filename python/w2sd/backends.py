"""Which inference backends this machine can run, and why the others cannot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import gpu_libraries
from .errors import BackendError, InvalidArgumentError, W2SDError
from .native import core
from .ort_library import find_ort_library, openvino_library, refuse_second_flavour

BACKENDS = ("cpu", "openvino", "cuda", "tensorrt")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not; "" when available


_LOADED: Path | None = None  # the library the core has loaded (once per process)


def _load_library(backend: str | None = None) -> str | None:
    """Load ONNX Runtime's library into the core (after the NVIDIA libraries a GPU build
    needs), the one for `backend` if this process has loaded none yet; the reason it
    failed, or None."""
    global _LOADED
    try:
        library = find_ort_library(backend)
        if library != _LOADED:
            refuse_second_flavour(library)
        gpu_libraries.preload_gpu_libraries(library)
        core().load_ort_library(str(library))
        _LOADED = library
    except W2SDError as e:
        return f"ONNX Runtime library unavailable: {e}"
    except ImportError as e:
        return f"the compiled core w2sd._core does not import: {e}"
    return None


def backend_status(backend: str | None = None) -> list[BackendStatus]:
    """Every known backend, with whether it is available here and, if not, why. `backend`:
    the one this process is about to use, which picks ONNX Runtime's library if none is
    loaded yet (``find_ort_library``)."""
    failure = _load_library(backend)
    if failure is not None:
        return [BackendStatus(b, False, failure) for b in BACKENDS]
    result = []
    for b in BACKENDS:
        available, reason = core().backend_availability(b)
        side = openvino_library()
        if b == "openvino" and not available and side is not None:
            reason += (
                f"; the OpenVINO build at {side} runs it in a process whose first backend is "
                "'openvino' and that has not imported the onnxruntime module (or set "
                f"W2SD_ORT_LIBRARY={side})"
            )
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
    status = {s.name: s for s in backend_status(backend)}[backend]
    if not status.available:
        raise BackendError(f"backend {backend!r} is not available on this machine: {status.reason}")
