"""LoRA files for the LoRA gap: parsing ``FILE:SCALE`` and loading the UNet part.

Export fuses each role's LoRA into its own UNet artifact; the reference applies
the same file unfused through diffusers' adapter API. Both load it here, with
diffusers' own state-dict conversion (diffusers/peft keys, kohya/A1111
``lora_unet_*`` keys). Needs torch, diffusers and peft.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2sd.errors import InvalidArgumentError

log = logging.getLogger("w2sd")


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    scale: float

    @classmethod
    def parse(cls, text: str, flag: str = "--lora") -> LoraSpec:
        """'FILE:SCALE' (scale may be negative) or 'FILE' (scale 1.0)."""
        path, sep, scale = text.rpartition(":")
        if not sep:
            path, scale = text, "1.0"
        try:
            value = float(scale)
        except ValueError:
            path, value = text, 1.0
        p = Path(path)
        if not p.is_file():
            raise InvalidArgumentError(f"{flag}: LoRA file '{p}' does not exist")
        return cls(p, value)


def unet_lora_state_dict(pipeline_cls: Any, spec: LoraSpec) -> tuple[dict[str, Any], Any]:
    """The UNet part of a LoRA file, converted to diffusers' layout; clear errors if malformed."""
    try:
        import peft  # noqa: F401  (diffusers' LoRA loading needs its PEFT backend)
    except ImportError:
        raise InvalidArgumentError(
            "LoRA support needs the peft package: pip install 'w2sd-runtime[export]'"
        ) from None
    try:
        state_dict, alphas = pipeline_cls.lora_state_dict(str(spec.path))
    except Exception as e:  # safetensors/torch raise many types for a bad file
        raise InvalidArgumentError(f"LoRA file '{spec.path}' cannot be read: {e}") from None
    if not state_dict or not all("lora" in k for k in state_dict):
        raise InvalidArgumentError(
            f"LoRA file '{spec.path}' is not a LoRA checkpoint (parameter names without 'lora')"
        )
    unet = {k: v for k, v in state_dict.items() if k.startswith("unet.")}
    if not unet:
        raise InvalidArgumentError(f"LoRA file '{spec.path}' has no UNet weights")
    if len(unet) != len(state_dict):
        log.warning(
            "%s: ignoring its text-encoder weights (roles share one text encoder)", spec.path
        )
    if alphas:
        alphas = {k: v for k, v in alphas.items() if k.startswith("unet.")}
    return unet, alphas


def load_unet_lora(pipeline_cls: Any, unet: Any, spec: LoraSpec, adapter_name: str) -> None:
    """Attach the LoRA to `unet` as adapter `adapter_name` (unfused)."""
    state_dict, alphas = unet_lora_state_dict(pipeline_cls, spec)
    try:
        with warnings.catch_warnings():
            # Several adapters on one UNet (one per role) is what the reference wants.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipeline_cls.load_lora_into_unet(state_dict, alphas, unet, adapter_name=adapter_name)
    except (ValueError, KeyError, RuntimeError) as e:
        raise InvalidArgumentError(f"LoRA file '{spec.path}' does not fit this UNet: {e}") from None


def fuse_unet_lora(pipeline_cls: Any, unet: Any, spec: LoraSpec) -> None:
    """Fuse the LoRA into `unet`'s weights at spec.scale and remove the adapter layers."""
    load_unet_lora(pipeline_cls, unet, spec, adapter_name="w2sd_fuse")
    unet.fuse_lora(lora_scale=spec.scale, adapter_names=["w2sd_fuse"])
    unet.unload_lora()
