"""w2sd-runtime: Weak-to-Strong Diffusion with Reflection, served from an engine dir."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BackendError,
    CancelledError,
    EngineDirError,
    InvalidArgumentError,
    NotFoundError,
    W2SDError,
)
from .runtime import W2SDRuntime, available_backends  # noqa: E402

__all__ = [
    "BackendError",
    "CancelledError",
    "EngineDirError",
    "InvalidArgumentError",
    "NotFoundError",
    "W2SDError",
    "W2SDRuntime",
    "available_backends",
    "__version__",
]
