"""The reference itself: with λ = 0 it is diffusers' own DDIM sampling."""

from __future__ import annotations

import numpy as np
import torch

from conftest import assert_images_match, assert_latents_close
from w2sd.latents import initial_latents


def test_reference_lambda0_equals_diffusers_ddim_pipeline(tiny_pair, reference):  # type: ignore[no-untyped-def]
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    strong, _ = tiny_pair
    pipe = StableDiffusionPipeline.from_pretrained(
        strong, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    x = initial_latents(5, (1, 4, 8, 8))
    common = dict(num_inference_steps=10, guidance_scale=7.5, negative_prompt="blurry")
    lat = pipe(
        "a cat on a mountain", latents=torch.from_numpy(x), output_type="latent", **common
    ).images.numpy()
    img = pipe(
        "a cat on a mountain", latents=torch.from_numpy(x), output_type="np", **common
    ).images
    ref = reference.sample(
        "a cat on a mountain",
        "blurry",
        latents=x,
        num_inference_steps=10,
        reflection_steps=0,
        strong_guidance=7.5,
        weak_guidance=7.5,
    )
    assert_latents_close(ref.latents, lat)
    assert_images_match(ref.images, np.round(img * 255).astype(np.uint8))
    assert ref.unet_calls == 10
