"""Which artifacts have already been hashed: SHA-256 checks once per file content, not
once per load.

Hashing an engine's weights at every load costs seconds (sd15-256: 4.1 GB, 2.9 s; an
SDXL pair several times that). After a file's SHA-256 has matched, this records the
file's identity as the kernel reports it: device, inode, size, modification time and
status-change time (ctime). Any write, truncation, copy over it, rename onto it or
chmod changes one of them, and ctime cannot be set back by a user, so a file whose
identity is unchanged still holds the bytes that were hashed, and is not hashed again.

The record lives in ``$W2SD_VERIFIED_CACHE`` (default ``~/.cache/w2sd/verified.json``;
set it to an empty string to hash every file at every load). Nothing is written into
the engine directory, which may be read-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV_VAR = "W2SD_VERIFIED_CACHE"


def record_path() -> Path | None:
    """Where the record lives; None when turned off (``W2SD_VERIFIED_CACHE=""``)."""
    configured = os.environ.get(ENV_VAR)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "w2sd" / "verified.json"


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class VerifiedFiles:
    """The files whose SHA-256 matched, by real path: {path: [identity..., sha256]}."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = record_path() if path is None else path
        self._entries: dict[str, list[object]] = {}
        self._changed = False
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none yet, or unreadable: hash everything, write a new one
        if isinstance(data, dict):
            self._entries = {k: v for k, v in data.items() if isinstance(v, list)}

    def vouches(self, file: Path, st: os.stat_result, sha256: str) -> bool:
        """Whether `file`, now with stat `st`, was hashed to `sha256` and is unchanged since."""
        entry = self._entries.get(str(file.resolve()))
        return entry == [*_identity(st), sha256]

    def add(self, file: Path, st: os.stat_result, sha256: str) -> None:
        """Record that `file` (with stat `st`, taken before it was hashed) hashed to `sha256`."""
        if self.path is None:
            return
        self._entries[str(file.resolve())] = [*_identity(st), sha256]
        self._changed = True

    def save(self) -> None:
        """Write the record (atomically) if it changed, dropping files that are gone. A
        record that cannot be written costs only the hashing next time."""
        if self.path is None or not self._changed:
            return
        from .manifest import write_json_atomic

        alive = {k: v for k, v in self._entries.items() if os.path.exists(k)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, alive)
        except OSError:
            return
        self._changed = False
