"""A UNet with its LoRA left unfused and the LoRA scale as a graph input.

Strong (+1.5), weak (-1.5) and denoiser (0.8) of the authors' LoRA gap then share one
set of base weights, one artifact and one session: every LoRA-adapted layer computes
``base(x) + B(A(x)) * (lora_scale * alpha / r)`` (what diffusers' unfused adapter
computes at that scale), and the runtime passes each role's ``lora_scale`` per call.
At scale 0 the branch adds exact zeros, so a role without the LoRA shares the artifact
too. Needs torch, diffusers and peft (export time only).
"""

from __future__ import annotations

from typing import Any

import torch

from w2sd.errors import InvalidArgumentError

from .lora import LoraSpec, load_unet_lora

_ADAPTER = "w2sd_input"


class LoraScale:
    """The traced scale tensor, set by the wrapper's forward and read by every branch.

    Not a Module: the branches hold a reference, so the tracer sees one input feeding
    every scaled branch."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


class ScaledLoraBranch(torch.nn.Module):
    """``base(x) + up(down(x)) * (scale * factor)``: peft's LoRA layer, scale as a tensor."""

    def __init__(
        self,
        base: torch.nn.Module,
        down: torch.nn.Module,
        up: torch.nn.Module,
        factor: float,
        scale: LoraScale,
    ) -> None:
        super().__init__()
        self.base = base
        self.down = down
        self.up = up
        self.factor = float(factor)
        self._scale = scale

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        scale = self._scale.value
        if scale is None:
            raise RuntimeError("ScaledLoraBranch called outside a forward that sets lora_scale")
        return self.base(x, *args, **kwargs) + self.up(self.down(x)) * (scale * self.factor)


def attach_lora_input(pipeline_cls: Any, unet: torch.nn.Module, spec: LoraSpec) -> LoraScale:
    """Load `spec` into `unet` unfused and turn every adapted layer into a
    ScaledLoraBranch reading the returned LoraScale (the wrapper sets it per call)."""
    from peft.tuners.lora.layer import LoraLayer

    load_unet_lora(pipeline_cls, unet, spec, adapter_name=_ADAPTER)
    scale = LoraScale()
    replaced = 0
    for name, module in list(unet.named_modules()):
        if not isinstance(module, LoraLayer) or _ADAPTER not in module.lora_A:
            continue
        if module.use_dora.get(_ADAPTER, False):
            raise InvalidArgumentError(
                f"LoRA file '{spec.path}' is a DoRA checkpoint; the unfused export supports "
                "plain LoRA only (export with --lora-mode fused)"
            )
        if getattr(module, "lora_bias", {}).get(_ADAPTER, False):
            raise InvalidArgumentError(
                f"LoRA file '{spec.path}' has LoRA biases; the unfused export supports plain "
                "LoRA only (export with --lora-mode fused)"
            )
        branch = ScaledLoraBranch(
            module.get_base_layer(),
            module.lora_A[_ADAPTER],
            module.lora_B[_ADAPTER],
            module.scaling[_ADAPTER],
            scale,
        )
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, branch)
        replaced += 1
    if replaced == 0:
        raise InvalidArgumentError(f"LoRA file '{spec.path}' adapts no layer of this UNet")
    # The peft bookkeeping (peft_config, adapter names) no longer describes the modules.
    if hasattr(unet, "peft_config"):
        del unet.peft_config
    unet._hf_peft_config_loaded = False
    return scale
