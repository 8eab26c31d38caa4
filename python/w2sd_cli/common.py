"""What every command shares: logging to stderr, the progress bar, the sampling flags."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ProgressBar:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label = label
        self.width = width
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> bool:
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        line = f"{self.label} [{bar}] {done}/{total} steps {elapsed:.1f}s"
        if self.tty:
            end = "\n" if done == total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
        return True


def _reflection_arg(text: str) -> int | tuple[int, ...]:
    from w2sd.request import parse_reflection

    try:
        return parse_reflection(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _request_fields() -> list[Any]:
    """SampleRequest's fields that have a command-line flag (their metadata says how)."""
    from dataclasses import fields

    from w2sd.request import SampleRequest

    found = []
    for f in fields(SampleRequest):
        if f.metadata.get("flag"):
            found.append(f)
    return found


def add_sample_args(p: argparse.ArgumentParser) -> None:
    from w2sd.request import parse_reflection

    for f in _request_fields():
        meta = dict(f.metadata)
        flag = meta.pop("flag")
        if meta.get("type") is parse_reflection:
            meta["type"] = _reflection_arg
        p.add_argument(flag, dest=f.name, default=None, **meta)
    p.add_argument("--backend", default="cpu", help="inference backend (default: cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: one per physical core)",
    )
    p.add_argument(
        "--no-memory-arena",
        action="store_true",
        help="turn off ONNX Runtime's CPU memory arena: a lower peak for big images "
        "(SDXL at 1024 px), at some speed",
    )
    p.add_argument("-o", "--output", default="out.png", help="output PNG path")


def run_sample(engine_dir: str, prompt: str, args: argparse.Namespace) -> Path:
    from w2sd.request import SampleRequest
    from w2sd.runtime import W2SDRuntime

    request = SampleRequest(
        prompt=prompt,
        callback=ProgressBar("sampling"),
        **{f.name: getattr(args, f.name) for f in _request_fields()},
    )
    t0 = time.perf_counter()
    rt = W2SDRuntime(
        engine_dir,
        backend=args.backend,
        threads=args.threads,
        memory_arena=not args.no_memory_arena,
    )
    t_load = time.perf_counter() - t0
    image = rt.sample(request)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    s = rt.last_stats
    log(
        f"wrote {out} ({image.width}x{image.height}, seed {s['seed']}) | load {t_load:.2f}s, "
        f"text {s['text_encode_s']:.3f}s, loop {s['loop_s']:.3f}s ({s['unet_calls']} UNet calls), "
        f"VAE {s['vae_decode_s']:.3f}s, total {s['e2e_s']:.3f}s"
    )
    return out
