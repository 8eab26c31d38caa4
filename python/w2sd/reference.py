"""A pure diffusers + PyTorch implementation of W2SD (../shared/W2SD-SPEC.md).

This is the parity oracle for the runtime: it uses diffusers' own
DDIMScheduler.step and DDIMInverseScheduler.step, the pipeline's own
``encode_prompt`` and VAE, and a plain Python loop that mirrors the spec's
pseudo-code line by line. It is slow on purpose: clarity over speed.

Needs torch, diffusers and transformers (``pip install w2sd-runtime[export]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROLES = ("strong", "weak", "denoiser")


@dataclass
class ReferenceOutput:
    latents: np.ndarray  # final latents (B, C, h, w) float32
    images: np.ndarray | None  # uint8 (B, H, W, 3), None for output_type="latent"
    unet_calls: int


def reflection_indices(num_steps: int, reflection_steps: int | Sequence[int]) -> set[int]:
    """R: the first lambda steps, or an explicit list of step indices."""
    if isinstance(reflection_steps, int):
        if not 0 <= reflection_steps <= num_steps - 1:
            raise ValueError(f"reflection_steps must be in [0, {num_steps - 1}]")
        return set(range(reflection_steps))
    idx = set(int(i) for i in reflection_steps)
    if any(not 0 <= i <= num_steps - 2 for i in idx):
        raise ValueError("reflection step indices must be in [0, num_steps - 2]")
    return idx


class W2SDReference:
    """W2SD on diffusers pipelines: text encoder, VAE, tokenizer and scheduler come from
    the strong pipeline; each role's UNet from its own pipeline folder."""

    def __init__(
        self,
        strong: str | Path,
        weak: str | Path,
        denoiser: str | Path | None = None,
    ) -> None:
        import torch
        from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionPipeline

        self.torch = torch
        self.pipe = StableDiffusionPipeline.from_pretrained(
            str(strong),
            torch_dtype=torch.float32,
            safety_checker=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)
        config = dict(self.pipe.scheduler.config)
        # The spec runs DDIM with clip_sample and thresholding off.
        config.update(clip_sample=False, thresholding=False)
        self.scheduler = DDIMScheduler.from_config(config)
        self.inverse_scheduler = DDIMInverseScheduler.from_config(config)
        unets: dict[str, Any] = {}
        cache: dict[str, Any] = {str(Path(strong).resolve()): self.pipe.unet}
        for role, folder in (("strong", strong), ("weak", weak), ("denoiser", denoiser or strong)):
            key = str(Path(folder).resolve())
            if key not in cache:
                from diffusers import UNet2DConditionModel

                cache[key] = UNet2DConditionModel.from_pretrained(
                    key, subfolder="unet", torch_dtype=torch.float32
                ).eval()
            unets[role] = cache[key]
        self.unets = unets

    def encode(self, prompts: list[str], negatives: list[str]) -> tuple[Any, Any]:
        cond, uncond = self.pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt=negatives)
        return cond, uncond

    def guided(self, role: str, x: Any, t: Any, g: float, cond: Any, uncond: Any) -> Any:
        """e = e_u + g (e_c - e_u), batched; the conditional pass alone when g == 1."""
        torch = self.torch
        unet = self.unets[role]
        with torch.no_grad():
            if g == 1.0:
                return unet(x, t, encoder_hidden_states=cond).sample
            both = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond]))
            e_u, e_c = both.sample.chunk(2)
            return e_u + g * (e_c - e_u)

    def sample(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        *,
        latents: np.ndarray,
        num_inference_steps: int,
        reflection_steps: int | Sequence[int],
        strong_guidance: float,
        weak_guidance: float,
        denoiser_guidance: float | None = None,
        inversion: str = "official",
        output_type: str = "np",
    ) -> ReferenceOutput:
        torch = self.torch
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is None:
            negatives = [""] * len(prompts)
        elif isinstance(negative_prompt, str):
            negatives = [negative_prompt] * len(prompts)
        else:
            negatives = list(negative_prompt)
        if inversion not in ("official", "exact"):
            raise ValueError(f"unknown inversion mode {inversion!r}")
        g = {
            "strong": strong_guidance,
            "weak": weak_guidance,
            "denoiser": strong_guidance if denoiser_guidance is None else denoiser_guidance,
        }
        cond, uncond = self.encode(prompts, negatives)
        self.scheduler.set_timesteps(num_inference_steps)
        self.inverse_scheduler.set_timesteps(num_inference_steps)
        timesteps = self.scheduler.timesteps
        reflect = reflection_indices(num_inference_steps, reflection_steps)
        x = torch.from_numpy(np.array(latents, dtype=np.float32)) * self.scheduler.init_noise_sigma
        calls = 0
        for i, t in enumerate(timesteps):
            if i in reflect:
                e = self.guided("strong", x, t, g["strong"], cond, uncond)
                x_s = self.scheduler.step(e, t, x).prev_sample
                e = self.guided("weak", x_s, t, g["weak"], cond, uncond)
                t_inv = timesteps[i + 1] if inversion == "official" else t
                x = self.inverse_scheduler.step(e, t_inv, x_s).prev_sample
                calls += 2
            e = self.guided("denoiser", x, t, g["denoiser"], cond, uncond)
            x = self.scheduler.step(e, t, x).prev_sample
            calls += 1
        final = x.numpy().astype(np.float32)
        if output_type == "latent":
            return ReferenceOutput(final, None, calls)
        vae = self.pipe.vae
        with torch.no_grad():
            image = vae.decode(x / vae.config.scaling_factor, return_dict=False)[0]
        image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
        return ReferenceOutput(final, (image * 255).round().astype(np.uint8), calls)
