"""The exceptions of w2sd. The compiled core raises these too (translated once, at the binding)."""

from __future__ import annotations


class W2SDError(RuntimeError):
    """Base class of every error w2sd raises on purpose."""


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
