"""What a GPU user would otherwise run (../shared/PERF-PROTOCOL.md): diffusers' own
``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` in fp16 with SDPA attention and
a DDIM scheduler, at T + 2λ steps (the UNet calls of the W2SD run it is compared with):
``diffusers-pipeline``; the same with the UNet under ``torch.compile``:
``diffusers-compile``. Each UNet call is timed on the device (CUDA events around the
module's forward) or, on a CPU, by the wall clock.

A W2SD run's peers sample plain DDIM from the strong model: the same work per UNet call,
not the same images (the parity oracle is ``w2sd_reference``, not these)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


class UnetCallTimer:
    """Times every forward of a module: CUDA events on a GPU, the wall clock on a CPU."""

    def __init__(self, module: Any, cuda: bool) -> None:
        import torch

        self._cuda = cuda
        self._pairs: list[tuple[Any, Any]] = []
        self._torch = torch
        module.register_forward_pre_hook(lambda *_: self._start())
        module.register_forward_hook(lambda *_: self._stop())

    def _now(self) -> Any:
        if not self._cuda:
            return time.perf_counter()
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _start(self) -> None:
        self._pairs.append((self._now(), None))

    def _stop(self) -> None:
        start, _ = self._pairs[-1]
        self._pairs[-1] = (start, self._now())

    def take(self) -> list[float]:
        """Seconds of each call since the last take()."""
        if self._cuda:
            self._torch.cuda.synchronize()
            times = [a.elapsed_time(b) / 1000.0 for a, b in self._pairs]
        else:
            times = [b - a for a, b in self._pairs]
        self._pairs = []
        return times


def load_pipeline(folder: str, cuda: bool, compile_unet: bool) -> Any:
    """The strong model's own pipeline as a user loads it: fp16 on a GPU (fp32 on a CPU),
    DDIM, SDPA (diffusers' default attention with torch 2), UNet compiled if asked."""
    import torch
    from diffusers import DDIMScheduler, DiffusionPipeline

    dtype = torch.float16 if cuda else torch.float32
    pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to("cuda" if cuda else "cpu")
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def run_pipeline(cfg: dict[str, Any], measure: Any, summary: Any) -> dict[str, Any]:
    """One ``diffusers-pipeline`` / ``diffusers-compile`` configuration (worker kind
    ``diffusers-pipeline``): `measure` and `summary` are the worker's."""
    import torch

    from w2sd.latents import initial_latents

    cuda = cfg["backend"] in ("cuda", "tensorrt")
    pipe = load_pipeline(cfg["sources"]["strong"], cuda, bool(cfg.get("compile")))
    timer = UnetCallTimer(pipe.unet, cuda)
    device = "cuda" if cuda else "cpu"
    latents = torch.from_numpy(initial_latents(cfg["seed"], tuple(cfg["latent_shape"])))
    latents = latents.to(device=device, dtype=pipe.unet.dtype)
    f = pipe.vae_scale_factor
    kwargs = dict(
        prompt=cfg["prompt"],
        num_inference_steps=cfg["pipeline_steps"],
        guidance_scale=cfg["guidance"]["strong"],
        latents=latents,
        height=cfg["latent_shape"][2] * f,
        width=cfg["latent_shape"][3] * f,
        output_type="np",
    )

    def one_run() -> Any:
        with torch.inference_mode():
            images = pipe(**kwargs).images
        if cuda:
            torch.cuda.synchronize()
        return images

    e2e, outs = measure(cfg, one_run)
    calls = timer.take()[-cfg["pipeline_steps"] :]
    return {
        "e2e_s": summary(e2e),
        "stages_s": {"loop": sum(calls)},
        "unet_calls": len(calls),
        "unet_call_s": statistics.median(calls),
        "compiled": bool(cfg.get("compile")),
        "image_mean": float(np.asarray(outs[-1]).mean()),
    }
