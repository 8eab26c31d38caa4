"""Trimming the resident pages of read-only file mappings (the OpenVINO backend's mapped
weights, csrc/include/w2sd/page_trimmer.h): read-only mappings under the given folders drop
out of RSS and read back the same bytes; writable mappings and other folders are left alone."""

from __future__ import annotations

import gc
import mmap
import sys
import threading
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


def test_no_trimming_pass_runs_while_mappings_are_freed(tmp_path):  # type: ignore[no-untyped-def]
    """A range read from /proc/self/maps must still be that file's mapping when it is
    advised: freed and mapped over in between, MADV_DONTNEED would zero the new memory.
    The backend frees OpenVINO models (what unmaps their weights) under a lock every
    trimming pass waits for."""
    data = np.arange(SIZE, dtype=np.uint8)
    (tmp_path / "model.bin").write_bytes(data.tobytes())
    weights = _mapped(tmp_path / "model.bin", mmap.ACCESS_READ)
    passes: list[int] = []
    seen_while_held: list[list[int]] = []

    def trim() -> None:
        passes.append(testing.trim_mapped_files([str(tmp_path)]))

    def during() -> None:
        trimming = threading.Thread(target=trim)
        trimming.start()
        trimming.join(timeout=0.5)
        seen_while_held.append(list(passes))
        holder.append(trimming)

    holder: list[threading.Thread] = []
    # No collection while the lock is held: freeing a runtime left by another test would
    # take it again on this thread.
    gc.collect()
    gc.disable()
    try:
        testing.with_file_mappings_freed(during)
    finally:
        gc.enable()
    holder[0].join()
    assert seen_while_held == [[]]  # the pass waited for the lock
    assert passes and passes[0] >= SIZE  # and ran once it was released
    np.testing.assert_array_equal(np.frombuffer(weights, dtype=np.uint8), data)
    weights.close()
