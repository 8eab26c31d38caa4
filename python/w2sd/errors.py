"""The exceptions of w2sd. The compiled core raises these too (translated once, at the binding)."""

from __future__ import annotations


class W2SDError(RuntimeError):
    """Base class of every error w2sd raises on purpose."""


class InvalidArgumentError(W2SDError, ValueError):
    """A caller passed a value the contract forbids (the message names it).

    ``param`` is the request field at fault (``"reflection_steps"``, ``"latents"``, ...)
    where one is, so that a server can report it without parsing the message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


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


def with_context(error: W2SDError, context: str) -> W2SDError:
    """The same error (class and ``param``) with `context` before its message."""
    if isinstance(error, InvalidArgumentError):
        return InvalidArgumentError(f"{context}: {error}", param=error.param)
    return type(error)(f"{context}: {error}")
