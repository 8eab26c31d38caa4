"""Runtime vs the diffusers reference, on the same initial latents (spec fp32 bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import STEPS, assert_images_match, assert_latents_close
from w2sd.latents import initial_latents

PROMPT = "a red bicycle in front of a house"

CASES = {
    "lambda0_plain_ddim": dict(reflection_steps=0),
    "lambda1": dict(reflection_steps=1),
    "lambda_T_minus_1_official": dict(reflection_steps=STEPS - 1, inversion="official"),
    "lambda_T_minus_1_exact": dict(reflection_steps=STEPS - 1, inversion="exact"),
    "default_lambda_exact": dict(reflection_steps=5, inversion="exact"),
    "step_list": dict(reflection_steps=[0, 3, 4, 8]),
    "step_list_exact": dict(reflection_steps=[1, 2, 7], inversion="exact"),
    "weak_guidance_1": dict(reflection_steps=5, weak_guidance=1.0),
    "denoiser_guidance_distinct": dict(reflection_steps=5, denoiser_guidance=3.0),
    "negative_prompt": dict(reflection_steps=5, negative_prompt="blurry, low quality"),
}


def _run_both(runtime, reference, batch=1, seed=11, **kw):  # type: ignore[no-untyped-def]
    kw = dict(kw)
    negative = kw.pop("negative_prompt", None)
    args = dict(
        num_inference_steps=STEPS,
        strong_guidance=7.5,
        weak_guidance=kw.pop("weak_guidance", 5.0),
        inversion=kw.pop("inversion", "official"),
        **kw,
    )
    prompts = PROMPT if batch == 1 else [PROMPT, "a blue cat"][:batch]
    x = initial_latents(seed, (batch, 4, 8, 8))
    got_latents = runtime.sample(prompts, negative, latents=x, output_type="latent", **args)
    got_images = runtime.sample(prompts, negative, latents=x, output_type="np", **args)
    ref = reference.sample(prompts, negative, latents=x, output_type="np", **args)
    return got_latents, got_images, ref


@pytest.mark.parametrize("case", sorted(CASES))
def test_runtime_matches_reference(runtime, reference, case):  # type: ignore[no-untyped-def]
    got_latents, got_images, ref = _run_both(runtime, reference, **CASES[case])
    assert_latents_close(got_latents, ref.latents)
    assert_images_match(got_images, ref.images)
    assert runtime.last_stats["unet_calls"] == ref.unet_calls


def test_batch_of_two(runtime, reference):  # type: ignore[no-untyped-def]
    got_latents, got_images, ref = _run_both(
        runtime, reference, batch=2, reflection_steps=5, negative_prompt=["ugly", "blurry"]
    )
    assert got_latents.shape == (2, 4, 8, 8)
    assert_latents_close(got_latents, ref.latents)
    assert_images_match(got_images, ref.images)


def test_reflection_changes_the_result(runtime):  # type: ignore[no-untyped-def]
    """A parity test that cannot pass by ignoring the reflection: λ=5 differs from λ=0."""
    x = initial_latents(3, (1, 4, 8, 8))
    plain = runtime.sample(PROMPT, latents=x, reflection_steps=0, output_type="latent")
    w2sd = runtime.sample(PROMPT, latents=x, reflection_steps=5, output_type="latent")
    assert np.abs(plain - w2sd).max() > 1e-2


def test_unet_call_count(runtime):  # type: ignore[no-untyped-def]
    x = initial_latents(0, (1, 4, 8, 8))
    runtime.sample(
        PROMPT, latents=x, num_inference_steps=10, reflection_steps=4, output_type="latent"
    )
    assert runtime.last_stats["unet_calls"] == 10 + 2 * 4
