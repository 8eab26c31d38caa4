"""What every backend build shares: write into a temporary directory next to the
final one, swap it in atomically, and record checksums of what was written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest, artifact_entry, make_public


def artifacts_under(root: Path, folder: Path) -> dict[str, Any]:
    """SHA-256 and size of every file below `folder`, keyed by path relative to `root`."""
    return {
        f.relative_to(root).as_posix(): artifact_entry(root, f.relative_to(root).as_posix())
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def replace_dir(tmp: Path, final: Path) -> None:
    """Put `tmp` in place of `final` (removing an older `final`) with normal permissions."""
    if final.exists():
        shutil.rmtree(final)
    make_public(tmp)
    os.replace(tmp, final)


def convert_models(
    manifest: Manifest,
    backend: str,
    sources: dict[str, str],
    convert: Callable[[Path, Path], None],
    log: Callable[[str], None],
    verb: str,
    filename: str = "model.onnx",
) -> dict[str, str]:
    """convert(src, dst) each model into ``backend/NAME/{filename}``; returns NAME -> file.

    Nothing is left behind on failure, and an earlier build stays until the new one
    is complete."""
    root = manifest.root
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{backend}.build-"))
    try:
        files = {}
        for i, (name, rel) in enumerate(sources.items(), 1):
            log(f"[{i}/{len(sources)}] {verb} {name} ({rel})")
            convert(root / rel, tmp / name / filename)
            files[name] = f"{backend}/{name}/{filename}"
        replace_dir(tmp, root / backend)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def build_converted(
    manifest: Manifest,
    backend: str,
    sources: dict[str, str],
    convert: Callable[[Path, Path], None],
    log: Callable[[str], None],
    verb: str,
    filename: str = "model.onnx",
    **facts: Any,
) -> dict[str, Any]:
    """Verify the sources, convert every model into ``backend/`` and record the build
    (files, `facts`, checksums) in the manifest."""
    manifest.verify(sorted(set(sources.values())), full=True)
    files = convert_models(manifest, backend, sources, convert, log, verb, filename)
    final = manifest.root / backend
    entry = {"files": files, **facts, "artifacts": artifacts_under(manifest.root, final)}
    manifest.record_build(backend, entry)
    log(f"built backend '{backend}' in {final}")
    return entry


def model_sources(manifest: Manifest) -> dict[str, str]:
    """name -> exported ONNX file (relative) for every model the runtime loads."""
    spec = manifest.spec
    sources = {f"unet{i}": u.file for i, u in enumerate(spec.unets)}
    for i, enc in enumerate(spec.text.encoders if spec.text is not None else []):
        sources[f"text_encoder{i}"] = enc.file
    if spec.models.vae_decoder is not None:
        sources["vae_decoder"] = spec.models.vae_decoder.file
    return sources


def model_kind(name: str) -> str:
    """'unet0' -> 'unet', 'text_encoder1' -> 'text_encoder', 'vae_decoder'."""
    return name.rstrip("0123456789")
