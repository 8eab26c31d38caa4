"""The reference itself: with λ = 0 it is diffusers' own DDIM sampling, for every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_images_match, assert_latents_close
from w2sd.latents import initial_latents


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("negative", [None, "blurry"])
def test_reference_lambda0_equals_diffusers_ddim_pipeline(zoo, family, negative):  # type: ignore[no-untyped-def]
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = zoo.pipeline(family, 1)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, safety_checker=None, requires_safety_checker=False
        )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    x = initial_latents(5, (1, 4, 8, 8))
    common = dict(num_inference_steps=10, guidance_scale=7.5, negative_prompt=negative)
    prompt = "a cat on a mountain"
    lat = pipe(prompt, latents=torch.from_numpy(x), output_type="latent", **common).images
    img = pipe(prompt, latents=torch.from_numpy(x), output_type="np", **common).images
    reference = zoo.reference(f"{family}-plain", strong=folder, weak=folder)
    ref = reference.sample(
        prompt,
        negative,
        latents=x,
        num_inference_steps=10,
        reflection_steps=0,
        strong_guidance=7.5,
        weak_guidance=7.5,
    )
    assert_latents_close(ref.latents, lat.numpy())
    assert_images_match(ref.images, np.round(img * 255).astype(np.uint8))
    assert ref.unet_calls == 10
