"""w2sd-runtime: Weak-to-Strong Diffusion with Reflection, served from an engine dir."""

from __future__ import annotations

__version__ = "0.1.0"

from .backends import BackendStatus, available_backends, backend_status  # noqa: E402
from .errors import (  # noqa: E402
    BackendError,
    CancelledError,
    EngineDirError,
    ExportError,
    ExportVerificationError,
    InvalidArgumentError,
    NotFoundError,
    W2SDError,
)
from .request import SampleRequest  # noqa: E402
from .runtime import W2SDRuntime  # noqa: E402

__all__ = [
    "BackendError",
    "BackendStatus",
    "CancelledError",
    "EngineDirError",
    "ExportError",
    "ExportVerificationError",
    "InvalidArgumentError",
    "NotFoundError",
    "SampleRequest",
    "W2SDError",
    "W2SDRuntime",
    "available_backends",
    "backend_status",
    "__version__",
]
