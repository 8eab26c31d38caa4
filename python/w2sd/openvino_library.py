"""Locate OpenVINO's C library (``libopenvino_c``) inside the installed ``openvino`` wheel,
without importing it: the core loads it at run time for backend ``openvino``, so the
extension imports without OpenVINO."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import NotFoundError

INSTALL_HINT = "`pip install w2sd-runtime[openvino]` (the openvino wheel)"


def openvino_c_library() -> Path | None:
    """libs/libopenvino_c.so.* of the installed openvino package, or None."""
    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        libs = Path(location) / "libs"
        found = sorted(libs.glob("libopenvino_c.so*")) + sorted(libs.glob("openvino_c.dll"))
        found += sorted(libs.glob("libopenvino_c*.dylib"))
        if found:
            # The versioned file (libopenvino_c.so.2641) is the real library.
            return max(found, key=lambda p: len(p.name))
    return None


def require_openvino_c_library() -> Path:
    """The library, or NotFoundError saying how to get it."""
    found = openvino_c_library()
    if found is None:
        why = (
            "the openvino package is not installed"
            if importlib.util.find_spec("openvino") is None
            else "the openvino package has no libs/libopenvino_c"
        )
        raise NotFoundError(f"OpenVINO's C library not found: {why}; {INSTALL_HINT}")
    return found
