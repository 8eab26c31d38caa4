"""What both exports share: the output-dir and defaults checks, and the manifest's
scheduler section (a DDIMScheduler config with its ᾱ table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2sd.errors import InvalidArgumentError


def check_out_and_defaults(
    out: Path, force: bool, inversion: str, steps: int, reflection_steps: int
) -> None:
    """Refuse a non-empty --out (unless forced) and bad sampling defaults."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise InvalidArgumentError(
            f"--out: '{out}' exists and is not empty (use --force to replace)"
        )
    if inversion not in ("official", "exact"):
        raise InvalidArgumentError(f"--inversion: unknown mode {inversion!r}")
    if steps <= 0:
        raise InvalidArgumentError("--steps must be positive")
    if not 0 <= reflection_steps <= steps - 1:
        raise InvalidArgumentError("--reflection-steps must be in [0, --steps - 1]")


def defaults_section(steps: int, reflection_steps: int, inversion: str) -> dict[str, Any]:
    """The manifest's sampling defaults (checked by check_out_and_defaults)."""
    return {
        "num_inference_steps": int(steps),
        "reflection_steps": int(reflection_steps),
        "inversion": inversion,
    }


def scheduler_section(config: dict[str, Any]) -> dict[str, Any]:
    """A DDIMScheduler config -> the manifest's scheduler section, with its ᾱ table."""
    import torch
    from diffusers import DDIMScheduler

    cfg = dict(config)
    # The spec runs DDIM with clip_sample and thresholding off, whatever the source says.
    cfg.update(clip_sample=False, thresholding=False)
    sched = DDIMScheduler.from_config(cfg)
    out = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    if out.get("trained_betas") is not None:
        out["trained_betas"] = [float(b) for b in out["trained_betas"]]
    out["alphas_cumprod"] = [float(a) for a in sched.alphas_cumprod.to(torch.float32).tolist()]
    return out
