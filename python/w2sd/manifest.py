"""The engine directory's ``manifest.json``: schema version, reading, validation, checksums.

An engine directory is self-contained and relocatable: every path in the
manifest is relative to the directory, and every artifact has a SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineDirError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "w2sd-engine"
FORMAT_VERSION = 1
ROLES = ("strong", "weak", "denoiser")

_REQUIRED_KEYS = {
    "format": str,
    "version": int,
    "family": str,
    "scheduler": dict,
    "latent_channels": int,
    "vae_scale_factor": int,
    "vae_scaling_factor": float,
    "image": dict,
    "text": dict,
    "unets": list,
    "roles": dict,
    "defaults": dict,
    "models": dict,
    "artifacts": dict,
}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_entry(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: Path) -> None:
    """Give a mkstemp/mkdtemp result the permissions a plain open/mkdir would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        make_public(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Manifest:
    """A validated manifest and the engine directory it belongs to."""

    root: Path
    data: dict[str, Any]

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def scheduler(self) -> dict[str, Any]:
        return self.data["scheduler"]

    @property
    def backends(self) -> dict[str, Any]:
        return self.data.setdefault("backends", {})

    def save(self) -> None:
        write_json_atomic(self.root / MANIFEST_NAME, self.data)

    def verify(self, rels: list[str], full: bool = True) -> None:
        """Check that each artifact exists with its recorded size (and SHA-256 if ``full``)."""
        table = dict(self.data["artifacts"])
        for backend in self.backends.values():
            table.update(backend.get("artifacts", {}))
        for rel in rels:
            entry = table.get(rel)
            if entry is None:
                raise EngineDirError(f"{self.root}: manifest has no checksum for artifact '{rel}'")
            path = self.root / rel
            if not path.is_file():
                raise EngineDirError(f"{self.root}: artifact '{rel}' is missing")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise EngineDirError(
                    f"{self.root}: artifact '{rel}' has {size} bytes, manifest says "
                    f"{entry['bytes']} (truncated or replaced?)"
                )
            if full and sha256_file(path) != entry["sha256"]:
                raise EngineDirError(
                    f"{self.root}: checksum mismatch for artifact '{rel}' (corrupt or modified)"
                )


def load_manifest(engine_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``engine_dir/manifest.json``; raise EngineDirError naming the problem."""
    root = Path(engine_dir)
    if not root.exists():
        raise EngineDirError(f"engine dir '{root}' does not exist")
    if not root.is_dir():
        raise EngineDirError(f"engine dir '{root}' is not a directory")
    path = root / MANIFEST_NAME
    if not path.is_file():
        hint = " (the directory is empty)" if not any(root.iterdir()) else ""
        raise EngineDirError(
            f"'{root}' is not an engine dir: no {MANIFEST_NAME}{hint}; create one with "
            f"`w2sd export --strong MODEL --weak MODEL --out {root}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineDirError(f"{path}: corrupt manifest (not valid JSON: {e})") from None
    if not isinstance(data, dict):
        raise EngineDirError(f"{path}: corrupt manifest (top level is not an object)")
    if data.get("format") != FORMAT_NAME:
        raise EngineDirError(f"{path}: not a w2sd engine manifest (format={data.get('format')!r})")
    if data.get("version") != FORMAT_VERSION:
        raise EngineDirError(
            f"{path}: manifest version {data.get('version')!r} is not supported by this w2sd "
            f"(expects {FORMAT_VERSION}); re-export the engine dir"
        )
    for key, kind in _REQUIRED_KEYS.items():
        if key not in data:
            raise EngineDirError(f"{path}: corrupt manifest (missing field '{key}')")
        value = data[key]
        if kind is float and isinstance(value, int):
            continue
        if not isinstance(value, kind):
            raise EngineDirError(
                f"{path}: corrupt manifest (field '{key}' should be {kind.__name__}, "
                f"got {type(value).__name__})"
            )
    for role in ROLES:
        if role not in data["roles"]:
            raise EngineDirError(f"{path}: corrupt manifest (roles has no '{role}')")
        unet = data["roles"][role].get("unet")
        if not isinstance(unet, int) or not 0 <= unet < len(data["unets"]):
            raise EngineDirError(f"{path}: corrupt manifest (roles.{role}.unet={unet!r})")
    encoders = data["text"].get("encoders")
    if not isinstance(encoders, list) or not encoders:
        raise EngineDirError(f"{path}: corrupt manifest (text.encoders)")
    for i, enc in enumerate(encoders):
        for key in ("file", "tokenizer", "max_length", "pad_token_id", "outputs"):
            if key not in enc:
                raise EngineDirError(f"{path}: corrupt manifest (text.encoders[{i}].{key})")
    alphas = data["scheduler"].get("alphas_cumprod")
    if not isinstance(alphas, list) or len(alphas) != data["scheduler"].get("num_train_timesteps"):
        raise EngineDirError(f"{path}: corrupt manifest (scheduler.alphas_cumprod)")
    return Manifest(root=root, data=data)
