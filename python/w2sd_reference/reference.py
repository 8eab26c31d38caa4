"""A pure diffusers + PyTorch implementation of W2SD (../shared/W2SD-SPEC.md).

This is the parity oracle for the runtime: it uses diffusers' own
DDIMScheduler.step and DDIMInverseScheduler.step, the pipeline's own
``encode_prompt`` (SD 1.x/2.x and SDXL), SDXL's ``_get_add_time_ids``, LoRAs
loaded as a diffusers user loads them (``pipeline.load_lora_weights``, one adapter per
role, switched with ``set_adapters``), and a plain Python loop that mirrors the spec's
pseudo-code line by line. Slow on purpose: clarity over speed. It imports nothing of the
runtime's or export's code, so that a check can disagree with them.

Needs torch, diffusers, transformers and peft (``pip install w2sd-runtime[export]``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROLES = ("strong", "weak", "denoiser")
Text = str | list[str] | None
Lora = Any  # a LoRA file and the role's scale: anything with .path and .scale, or (path, scale)


def _lora_file_and_scale(lora: Lora) -> tuple[str, float]:
    if isinstance(lora, tuple):
        return str(lora[0]), float(lora[1])
    return str(lora.path), float(lora.scale)


@dataclass
class ReferenceOutput:
    latents: np.ndarray  # final latents (B, C, h, w) float32
    images: np.ndarray | None  # uint8 (B, H, W, 3), None for output_type="latent"
    unet_calls: int
    stages_s: dict[str, float] | None = None  # text_encode, loop, vae_decode (wall time)


@dataclass
class _Cond:
    """One role's conditioning: embeddings and, for SDXL, added conditions."""

    cond: Any
    uncond: Any
    added_cond: dict[str, Any] | None = None
    added_uncond: dict[str, Any] | None = None


def reflection_indices(num_steps: int, reflection_steps: int | Sequence[int]) -> set[int]:
    """R: the first lambda steps, or an explicit list of step indices."""
    if isinstance(reflection_steps, int):
        if not 0 <= reflection_steps <= num_steps - 1:
            raise ValueError(f"reflection_steps must be in [0, {num_steps - 1}]")
        return set(range(reflection_steps))
    idx = {int(i) for i in reflection_steps}
    if any(not 0 <= i <= num_steps - 2 for i in idx):
        raise ValueError("reflection step indices must be in [0, num_steps - 2]")
    return idx


class W2SDReference:
    """W2SD on diffusers pipelines. Each role uses its own pipeline folder: its UNet (with
    an optional LoRA at the role's scale, applied unfused) and its text encoder(s) through
    that pipeline's own ``encode_prompt`` (LoRAs never touch the text encoders). The VAE
    and the scheduler come from the strong pipeline."""

    def __init__(
        self,
        strong: str | Path,
        weak: str | Path,
        denoiser: str | Path | None = None,
        *,
        strong_lora: Lora | None = None,
        weak_lora: Lora | None = None,
        denoiser_lora: Lora | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        variant: str | None = None,
    ) -> None:
        """`device`/`dtype`: where and in what precision the pipelines run ("cuda" and
        "float16" is what a user picks on an NVIDIA GPU); the latents handed back are fp32.
        Weights stored in another dtype are cast to `dtype` as diffusers loads them."""
        import torch
        from diffusers import DDIMInverseScheduler, DDIMScheduler, DiffusionPipeline

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        folders = {"strong": strong, "weak": weak, "denoiser": denoiser or strong}
        loras = {"strong": strong_lora, "weak": weak_lora, "denoiser": denoiser_lora}
        pipes: dict[str, Any] = {}
        self.pipes: dict[str, Any] = {}  # role -> its own pipeline
        self.adapters: dict[str, tuple[str, float] | None] = {}
        for role in ROLES:
            key = str(Path(folders[role]).resolve())
            if key not in pipes:
                kwargs: dict[str, Any] = {"torch_dtype": self.dtype, "variant": variant}
                if "safety_checker" in json.loads((Path(key) / "model_index.json").read_text()):
                    kwargs.update(safety_checker=None, requires_safety_checker=False)
                pipe = DiffusionPipeline.from_pretrained(key, local_files_only=True, **kwargs)
                pipes[key] = pipe.to(self.device)
                pipes[key].set_progress_bar_config(disable=True)
            pipe = self.pipes[role] = pipes[key]
            if loras[role] is None:
                self.adapters[role] = None
                continue
            path, scale = _lora_file_and_scale(loras[role])
            name = f"w2sd_{role}"
            with warnings.catch_warnings():
                # One adapter per role on a shared pipeline is what this oracle wants.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(path, adapter_name=name)
            self.adapters[role] = (name, scale)
        self.pipe = self.pipes["strong"]
        self.family = "sdxl" if hasattr(self.pipe, "text_encoder_2") else "sd"
        config = dict(self.pipe.scheduler.config)
        # The spec runs DDIM with clip_sample and thresholding off.
        config.update(clip_sample=False, thresholding=False)
        self.scheduler = DDIMScheduler.from_config(config)
        self.inverse_scheduler = DDIMInverseScheduler.from_config(config)

    def _sync(self) -> None:
        """Stage times on a GPU count the kernels, not their launch."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    # -- conditioning -------------------------------------------------------------

    def _encode(
        self, role: str, prompts: list[str], negatives: list[str] | None, height: int, width: int
    ) -> _Cond:
        pipe = self.pipes[role]
        if self._has_adapters(pipe):
            pipe.disable_lora()  # the spec encodes with the LoRA off
        if self.family == "sd":
            cond, uncond = pipe.encode_prompt(
                prompts, self.device, 1, True, negative_prompt=negatives or [""] * len(prompts)
            )
            return _Cond(cond, uncond)
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompts,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negatives,
        )
        te2 = pipe.text_encoder_2
        time_ids = (
            pipe._get_add_time_ids(
                (height, width),
                (0, 0),
                (height, width),
                dtype=cond.dtype,
                text_encoder_projection_dim=te2.config.projection_dim,
            )
            .repeat(len(prompts), 1)
            .to(self.device)
        )
        return _Cond(
            cond,
            uncond,
            {"text_embeds": pooled, "time_ids": time_ids},
            {"text_embeds": uncond_pooled, "time_ids": time_ids},
        )

    def _has_adapters(self, pipe: Any) -> bool:
        return any(a is not None and self.pipes[r] is pipe for r, a in self.adapters.items())

    def _activate(self, role: str, scale: float | None = None) -> None:
        """Enable exactly this role's LoRA adapter at its scale, or at `scale` if given
        (a role without its own LoRA then borrows the adapter of a role sharing its
        pipeline, as an engine exported with --lora-mode input does); none: LoRA off."""
        pipe = self.pipes[role]
        if not self._has_adapters(pipe):
            if scale not in (None, 0.0):
                raise ValueError(f"{role} has no LoRA to apply at scale {scale}")
            return
        adapter = self.adapters[role]
        if adapter is None and scale is not None:
            shared = [a for r, a in self.adapters.items() if a and self.pipes[r] is pipe]
            adapter = shared[0] if shared else None
        if adapter is None or scale == 0.0:
            pipe.disable_lora()
        else:
            pipe.enable_lora()
            pipe.set_adapters([adapter[0]], [adapter[1] if scale is None else scale])

    def guided(
        self, role: str, x: Any, t: Any, g: float, c: _Cond, lora_scale: float | None = None
    ) -> Any:
        """e = e_u + g (e_c - e_u), batched; the conditional pass alone when g == 1."""
        torch = self.torch
        self._activate(role, lora_scale)
        unet = self.pipes[role].unet
        with torch.no_grad():
            if g == 1.0:
                return unet(
                    x, t, encoder_hidden_states=c.cond, added_cond_kwargs=c.added_cond
                ).sample
            added = None
            if c.added_cond is not None:
                added = {k: torch.cat([c.added_uncond[k], c.added_cond[k]]) for k in c.added_cond}
            both = unet(
                torch.cat([x, x]),
                t,
                encoder_hidden_states=torch.cat([c.uncond, c.cond]),
                added_cond_kwargs=added,
            )
            e_u, e_c = both.sample.chunk(2)
            return e_u + g * (e_c - e_u)

    # -- sampling -----------------------------------------------------------------

    def sample(
        self,
        prompt: str | list[str],
        negative_prompt: Text = None,
        *,
        latents: np.ndarray,
        num_inference_steps: int,
        reflection_steps: int | Sequence[int],
        strong_guidance: float,
        weak_guidance: float,
        denoiser_guidance: float | None = None,
        inversion: str = "official",
        output_type: str = "np",
        role_prompts: dict[str, Text] | None = None,
        role_negative_prompts: dict[str, Text] | None = None,
        lora_scales: dict[str, float] | None = None,
    ) -> ReferenceOutput:
        import time

        torch = self.torch
        t_start = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts)

        def as_list(text: Text) -> list[str] | None:
            if text is None:
                return None
            return [text] * batch if isinstance(text, str) else list(text)

        if inversion not in ("official", "exact"):
            raise ValueError(f"unknown inversion mode {inversion!r}")
        g = {
            "strong": strong_guidance,
            "weak": weak_guidance,
            "denoiser": strong_guidance if denoiser_guidance is None else denoiser_guidance,
        }
        f = self.pipe.vae_scale_factor
        height, width = latents.shape[2] * f, latents.shape[3] * f
        conds = {}
        for role in ROLES:
            p = (role_prompts or {}).get(role)
            n = (role_negative_prompts or {}).get(role)
            conds[role] = self._encode(
                role,
                as_list(p) or prompts,
                as_list(n if n is not None else negative_prompt),
                height,
                width,
            )
        self._sync()
        t_text = time.perf_counter() - t_start
        t_loop_start = time.perf_counter()
        self.scheduler.set_timesteps(num_inference_steps)
        self.inverse_scheduler.set_timesteps(num_inference_steps)
        timesteps = self.scheduler.timesteps
        reflect = reflection_indices(num_inference_steps, reflection_steps)
        x = torch.from_numpy(np.array(latents, dtype=np.float32)) * self.scheduler.init_noise_sigma
        x = x.to(self.device, self.dtype)
        calls = 0
        ls = lora_scales or {}  # per-request LoRA scales (default: each role's own)
        for i, t in enumerate(timesteps):
            if i in reflect:
                e = self.guided("strong", x, t, g["strong"], conds["strong"], ls.get("strong"))
                x_s = self.scheduler.step(e, t, x).prev_sample
                e = self.guided("weak", x_s, t, g["weak"], conds["weak"], ls.get("weak"))
                t_inv = timesteps[i + 1] if inversion == "official" else t
                x = self.inverse_scheduler.step(e, t_inv, x_s).prev_sample
                calls += 2
            e = self.guided("denoiser", x, t, g["denoiser"], conds["denoiser"], ls.get("denoiser"))
            x = self.scheduler.step(e, t, x).prev_sample
            calls += 1
        final = x.float().cpu().numpy()
        stages = {"text_encode": t_text, "loop": time.perf_counter() - t_loop_start}
        if output_type == "latent":
            return ReferenceOutput(final, None, calls, {**stages, "vae_decode": 0.0})
        t_vae = time.perf_counter()
        vae = self.pipe.vae
        z = x / vae.config.scaling_factor
        if self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            # What diffusers' pipelines do: this VAE overflows in fp16 (SDXL's).
            vae = vae.to(torch.float32)
            z = z.float()
        with torch.no_grad():
            image = vae.decode(z, return_dict=False)[0]
        image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        stages["vae_decode"] = time.perf_counter() - t_vae
        return ReferenceOutput(final, (image * 255).round().astype(np.uint8), calls, stages)
