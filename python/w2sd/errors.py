"""The exceptions of w2sd, and the one route every failure takes to become one of them.

The compiled core's failures cross into Python in one place (``from_core``, called by the
binding's translator for raised errors and for ``sample_many``'s per-request ones); a build
in a child process sends its error as ``to_record`` and the parent raises ``from_record``;
the HTTP server answers with ``param``. Class and ``param`` survive every hop.
"""

from __future__ import annotations

from typing import Any


class W2SDError(RuntimeError):
    """Base class of every error w2sd raises on purpose.

    ``param`` is the argument or request field at fault (``"reflection_steps"``,
    ``"latents"``, ...) where one is, so that a server can report it without parsing the
    message."""

    def __init__(self, message: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (Ray, multiprocessing) keeps the class, the message and param.
        return (type(self), (str(self), self.param))


class InvalidArgumentError(W2SDError, ValueError):
    """A caller passed a value the contract forbids (the message names it)."""


class NotFoundError(W2SDError, FileNotFoundError):
    """A file, library or engine artifact is missing."""


class EngineDirError(W2SDError):
    """An engine directory or its manifest is missing, corrupt or inconsistent."""


class BackendError(W2SDError):
    """The inference backend (ONNX Runtime) failed, or a backend is unavailable."""


class CancelledError(W2SDError):
    """The progress callback asked sampling to stop."""


class ExportVerificationError(W2SDError):
    """An exported ONNX model does not reproduce its PyTorch module within the spec's bound."""


class ExportError(W2SDError):
    """A checkpoint export cannot read: a missing component, an unknown pipeline class, a
    corrupt or truncated weights file (the message names the file and the field)."""


# Every class by name: what a record or the core may name (nothing else is instantiated).
ERROR_CLASSES: dict[str, type[W2SDError]] = {
    cls.__name__: cls
    for cls in (
        W2SDError,
        InvalidArgumentError,
        NotFoundError,
        EngineDirError,
        BackendError,
        CancelledError,
        ExportVerificationError,
        ExportError,
    )
}

# The core's ErrorCode (csrc/include/w2sd/status.h) -> the class it becomes.
CORE_CODES: dict[str, type[W2SDError]] = {
    "invalid_argument": InvalidArgumentError,
    "not_found": NotFoundError,
    "backend": BackendError,
    "cancelled": CancelledError,
    "internal": W2SDError,
}


def from_core(code: str, message: str, param: str | None = None) -> W2SDError:
    """The exception for a failure of the compiled core (its ErrorCode name, message and the
    argument at fault, if it named one). A C++ exception that is not the core's own
    (``std::out_of_range``, ...) arrives as code ``internal``."""
    return CORE_CODES.get(code, W2SDError)(message, param=param or None)


def to_record(error: W2SDError) -> dict[str, Any]:
    """A JSON-able record of `error` (class name, message, param): a child process's answer."""
    return {"error": type(error).__name__, "message": str(error), "param": error.param}


def from_record(record: dict[str, Any]) -> W2SDError:
    """The exception a record made by ``to_record`` describes (an unknown class: W2SDError)."""
    cls = ERROR_CLASSES.get(str(record.get("error")), W2SDError)
    param = record.get("param")
    return cls(str(record.get("message", "")), param=None if param is None else str(param))


def with_context(error: W2SDError, context: str) -> W2SDError:
    """The same error (class and ``param``) with `context` before its message."""
    return type(error)(f"{context}: {error}", param=error.param)
