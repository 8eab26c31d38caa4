"""Which inference backends this machine can run, and why the others cannot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import gpu_libraries
from .errors import BackendError, InvalidArgumentError, W2SDError
from .native import core
from .openvino_library import require_openvino_c_library
from .ort_library import find_ort_library

BACKENDS = ("cpu", "openvino", "cuda", "tensorrt")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not; "" when available


_LOADED: Path | None = None  # the ONNX Runtime library the core has loaded (once per process)


def _load_library() -> str | None:
    """Load ONNX Runtime's library into the core (after the NVIDIA libraries a GPU build
    needs); the reason it failed, or None."""
    global _LOADED
    try:
        library = find_ort_library()
        if library != _LOADED:
            gpu_libraries.preload_gpu_libraries(library)
            core().load_ort_library(str(library))
        _LOADED = library
    except W2SDError as e:
        return f"ONNX Runtime library unavailable: {e}"
    except ImportError as e:
        return f"the compiled core w2sd._core does not import: {e}"
    return None


def _openvino_status() -> BackendStatus:
    """OpenVINO's own runtime: its wheel's C library loaded into the core, then the core's
    probe (compiled in, the CPU plugin loads on this CPU)."""
    try:
        core().load_openvino_library(str(require_openvino_c_library()))
        available, reason = core().backend_availability("openvino")
    except W2SDError as e:
        return BackendStatus("openvino", False, str(e))
    except ImportError as e:
        return BackendStatus(
            "openvino", False, f"the compiled core w2sd._core does not import: {e}"
        )
    return BackendStatus("openvino", bool(available), str(reason))


def backend_status(backend: str | None = None) -> list[BackendStatus]:
    """Every known backend, with whether it is available here and, if not, why. `backend`:
    the one this process is about to use (only it is probed when given)."""
    names = BACKENDS if backend is None else (backend,)
    failure = _load_library() if any(b != "openvino" for b in names) else None
    result = []
    for b in names:
        if b == "openvino":
            result.append(_openvino_status())
            continue
        if failure is not None:
            result.append(BackendStatus(b, False, failure))
            continue
        available, reason = core().backend_availability(b)
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
