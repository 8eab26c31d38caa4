"""Weights files as stored: which files a component folder holds (plain or variant,
.safetensors or .bin, sharded or not), their dtype, and a check of each file before any
loader reads it, so that a corrupt or truncated file, or a safetensors header that lies,
is one line naming the file and the field (never a loader's traceback)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from w2sd.errors import ExportError

# diffusers (diffusion_pytorch_model) and transformers (model, pytorch_model) weights, with
# an optional variant ("fp16") and shard suffix: model.fp16-00001-of-00002.safetensors.
_WEIGHTS = re.compile(
    r"^(?:diffusion_pytorch_model|model|pytorch_model)(?:\.(?P<variant>[A-Za-z0-9_]+))?"
    r"(?:-\d+-of-\d+)?\.(?:safetensors|bin)$"
)

# safetensors dtype -> (bytes per element, torch name)
_DTYPES = {
    "F64": (8, "float64"),
    "F32": (4, "float32"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "F8_E4M3": (1, "float8_e4m3fn"),
    "F8_E5M2": (1, "float8_e5m2"),
    "I64": (8, "int64"),
    "I32": (4, "int32"),
    "I16": (2, "int16"),
    "I8": (1, "int8"),
    "U8": (1, "uint8"),
    "BOOL": (1, "bool"),
}
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the header's size


def weight_files(folder: Path) -> dict[str | None, list[Path]]:
    """Weights files in one component folder, by variant (None: the plain files)."""
    found: dict[str | None, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = _WEIGHTS.match(p.name)
            if m and p.is_file():
                found.setdefault(m.group("variant"), []).append(p)
    return found


def pick_variant(folder: Path, requested: str | None, flag: str) -> str | None:
    """The variant to load from `folder`: `requested` where the folder has it, else the
    plain files, else the only variant there is (as a folder saved with variant="fp16"
    holds). Refuses a folder with no weights, or with several variants and none asked."""
    found = weight_files(folder)
    if not found:
        raise ExportError(
            f"{flag}: '{folder}' has no weights file (diffusion_pytorch_model or model, "
            ".safetensors or .bin)",
            param="weights",
        )
    if requested in found:
        return requested
    if None in found:
        return None
    if requested is None and len(found) == 1:
        return next(iter(found))
    names = ", ".join(sorted(str(v) for v in found))
    hint = f"has no '{requested}' variant" if requested else "holds several variants"
    raise ExportError(
        f"{flag}: '{folder}' {hint} and no plain weights (variants: {names}); "
        "pass --variant with one of them",
        param="variant",
    )


def safetensors_header(path: Path) -> dict[str, Any]:
    """The header of a .safetensors file, checked against the file: its length, JSON, and
    every tensor's dtype, shape and data_offsets (inside the file, of the size the shape
    and dtype need). Raises ExportError naming the file and the field."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ExportError(
                f"{path}: truncated safetensors file ({size} bytes, no header length)",
                param="header_length",
            )
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise ExportError(
                f"{path}: safetensors field 'header_length' ({n}) runs past the end of the "
                f"file ({size} bytes): truncated, or not a safetensors file",
                param="header_length",
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: safetensors header is not JSON ({e})", param="header") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: safetensors header is not a JSON object", param="header")
    data_bytes = size - 8 - n
    for name, info in header.items():
        if name != "__metadata__":
            _check_tensor(path, name, info, data_bytes)
    return header


def _check_tensor(path: Path, name: str, info: Any, data_bytes: int) -> None:
    def bad(field: str, why: str) -> ExportError:
        return ExportError(f"{path}: tensor '{name}' field '{field}' {why}", param=field)

    if not isinstance(info, dict):
        raise bad("dtype", "missing (the entry is not an object)")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPES:
        raise bad("dtype", f"is {dtype!r}, not a safetensors dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad("shape", f"is {shape!r}, not a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
    ):
        raise bad("data_offsets", f"is {offsets!r}, not [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= data_bytes:
        raise bad(
            "data_offsets",
            f"{offsets} lies outside the file's {data_bytes} data bytes "
            "(a truncated file, or a header that lies)",
        )
    need = math.prod(shape) * _DTYPES[dtype][0]
    if end - begin != need:
        raise bad(
            "shape",
            f"{shape} in {dtype} needs {need} bytes but data_offsets {offsets} span {end - begin}",
        )


def _bin_dtypes(path: Path) -> Counter[str]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # a zip or pickle error of any kind: the file is unreadable
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"{path}: not a readable PyTorch weights file ({first})", param="weights"
        ) from None
    if not isinstance(state, dict):
        raise ExportError(f"{path}: holds no state dict of tensors", param="weights")
    counts: Counter[str] = Counter()
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            counts[str(value.dtype).removeprefix("torch.")] += value.numel()
    return counts


def files_dtype(files: list[Path]) -> str:
    """Check every file (headers of .safetensors, a lazy load of .bin) and return the
    floating-point dtype holding most of their values ("float16", ...)."""
    counts: Counter[str] = Counter()
    for path in files:
        if path.suffix == ".safetensors":
            for name, info in safetensors_header(path).items():
                if name == "__metadata__" or not info["dtype"].startswith(("F", "BF")):
                    continue
                counts[_DTYPES[info["dtype"]][1]] += math.prod(info["shape"])
        else:
            counts += _bin_dtypes(path)
    return counts.most_common(1)[0][0] if counts else "none"


def tensor_names(path: Path) -> list[str]:
    """The tensor names of a checked .safetensors file."""
    return [k for k in safetensors_header(path) if k != "__metadata__"]
