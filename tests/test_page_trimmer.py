"""Trimming the resident pages of read-only file mappings (the OpenVINO backend's mapped
weights, csrc/include/w2sd/page_trimmer.h): read-only mappings under the given folders drop
out of RSS and read back the same bytes; writable mappings and other folders are left alone."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from w2sd import testing

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/smaps is Linux's")
SIZE = 8 << 20


def _resident(buf: mmap.mmap) -> int:
    """Rss in bytes of the mapping holding `buf` (from /proc/self/smaps)."""
    address = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    current = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            current = start <= address < end
        elif current and line.startswith("Rss:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("mapping not found")


def _mapped(path: Path, access: int) -> mmap.mmap:
    with path.open("r+b" if access == mmap.ACCESS_COPY else "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=access)
    np.frombuffer(buf, dtype=np.uint8).sum()  # touch every page
    return buf


def test_read_only_mappings_under_the_dirs_are_trimmed(tmp_path):  # type: ignore[no-untyped-def]
    data = np.random.default_rng(0).integers(0, 255, SIZE, dtype=np.uint8)
    inside, outside = tmp_path / "model", tmp_path / "model-other"
    inside.mkdir()
    outside.mkdir()
    for d in (inside, outside):
        (d / "model.onnx.data").write_bytes(data.tobytes())
    weights = _mapped(inside / "model.onnx.data", mmap.ACCESS_READ)
    elsewhere = _mapped(outside / "model.onnx.data", mmap.ACCESS_READ)  # same prefix, other dir
    written = _mapped(inside / "model.onnx.data", mmap.ACCESS_COPY)
    written[:4] = b"edit"  # a private copy of the page: trimming it would lose this
    assert _resident(weights) >= SIZE // 2 and _resident(elsewhere) >= SIZE // 2

    advised = testing.trim_mapped_files([str(inside)])

    assert advised >= SIZE
    assert _resident(weights) < SIZE // 8
    assert _resident(elsewhere) >= SIZE // 2
    assert written[:4] == b"edit" and _resident(written) >= SIZE // 2
    np.testing.assert_array_equal(np.frombuffer(weights, dtype=np.uint8), data)  # reads back
    for buf in (weights, elsewhere, written):
        buf.close()


def test_nothing_to_trim_is_zero(tmp_path):  # type: ignore[no-untyped-def]
    assert testing.trim_mapped_files([str(tmp_path)]) == 0
    assert testing.trim_mapped_files([]) == 0
