"""The extension keeps its C++ runtime to itself.

Some toolchains link libstdc++ statically (the GCC on this project's GPU machines does).
Exported, those copies of libstdc++'s symbols were interposed by the libstdc++.so.6 that
torch loads into the global scope, and the two copies met inside one std::ostringstream: a
segfault formatting a cancellation message on an H100. The extension therefore exports its
module init function and nothing else, whatever the toolchain links in.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import w2sd._core


def _dynamic_symbols(path: Path) -> list[tuple[str, str]]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        [nm, "-D", "--defined-only", str(path)], check=True, capture_output=True, text=True
    ).stdout
    symbols = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols.append((parts[1], parts[2]))
    return symbols


def test_the_extension_exports_only_its_init_function():  # type: ignore[no-untyped-def]
    path = Path(w2sd._core.__file__)
    exported = _dynamic_symbols(path)
    names = sorted(name for _, name in exported)
    assert names == ["PyInit__core"], f"{path.name} exports {len(names)} symbols: {names[:20]}"


def test_no_symbol_is_merged_across_the_process():  # type: ignore[no-untyped-def]
    """STB_GNU_UNIQUE symbols (nm type 'u') are unified by the loader even across
    RTLD_LOCAL modules; none may leave the extension."""
    unique = [name for kind, name in _dynamic_symbols(Path(w2sd._core.__file__)) if kind == "u"]
    assert unique == []
