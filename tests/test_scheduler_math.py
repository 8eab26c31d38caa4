"""The C++ DDIM math against diffusers' DDIMScheduler / DDIMInverseScheduler, step by step.

The C++ functions tested here (ddim_update via DdimSchedule, cfg_combine) are
the same host/device functions the loop and the CUDA kernels call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from w2sd import _core, testing

# fp32 elementwise math done in the same operation order: equal to float rounding.
RTOL = 1e-6
ATOL = 1e-6

CONFIGS = {
    "sd15": dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    ),
    "sd2_v": dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="v_prediction",
    ),
    "alpha_one_trailing": dict(
        beta_schedule="linear", set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing"
    ),
    "linspace_v": dict(
        beta_schedule="squaredcos_cap_v2",
        set_alpha_to_one=False,
        timestep_spacing="linspace",
        prediction_type="v_prediction",
    ),
}


def _schedulers(name: str, steps: int):  # type: ignore[no-untyped-def]
    cfg = dict(CONFIGS[name], clip_sample=False)
    fwd = DDIMScheduler(**cfg)
    fwd.set_timesteps(steps)
    ours = _core.DdimSchedule(
        num_train_timesteps=fwd.config.num_train_timesteps,
        alphas_cumprod=fwd.alphas_cumprod.numpy().astype(np.float32),
        set_alpha_to_one=fwd.config.set_alpha_to_one,
        steps_offset=fwd.config.steps_offset,
        timestep_spacing=fwd.config.timestep_spacing,
        prediction_type=fwd.config.prediction_type,
        num_inference_steps=steps,
    )
    return fwd, ours, cfg


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("steps", [1, 3, 10, 25, 50, 999])
def test_timesteps_match_diffusers(name: str, steps: int) -> None:
    fwd = DDIMScheduler(**CONFIGS[name], clip_sample=False)
    fwd.set_timesteps(steps)
    if len(fwd.timesteps) != steps:
        # diffusers' trailing spacing yields a wrong count for some T (np.arange rounding);
        # the core refuses instead of running a schedule of the wrong length.
        from w2sd.errors import W2SDError

        with pytest.raises(W2SDError, match="trailing"):
            _schedulers(name, steps)
        return
    _, ours, _ = _schedulers(name, steps)
    assert list(ours.timesteps) == fwd.timesteps.tolist()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_and_inverse_step_match_diffusers(name: str) -> None:
    steps = 10
    fwd, ours, cfg = _schedulers(name, steps)
    inv = DDIMInverseScheduler(
        **{k: v for k, v in cfg.items() if k != "timestep_spacing"},
        timestep_spacing="trailing" if cfg["timestep_spacing"] == "trailing" else "leading",
    )
    inv.set_timesteps(steps)
    gen = torch.Generator().manual_seed(0)
    for t in fwd.timesteps:
        x = torch.randn(2, 4, 8, 8, generator=gen)
        e = torch.randn(2, 4, 8, 8, generator=gen)
        expected = fwd.step(e, t, x).prev_sample.numpy()
        got = ours.step(e.numpy(), int(t), x.numpy())
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
        # Inverse step at tau_i ("exact") and at every tau, which covers the
        # official mode's tau_{i+1} including the last one, whose source level is negative.
        expected_inv = inv.step(e, t, x).prev_sample.numpy()
        got_inv = ours.inverse_step(e.numpy(), int(t), x.numpy())
        np.testing.assert_allclose(got_inv, expected_inv, rtol=RTOL, atol=ATOL)


def test_cfg_combine_matches_formula() -> None:
    rng = np.random.default_rng(0)
    e_u = rng.standard_normal(1000).astype(np.float32)
    e_c = rng.standard_normal(1000).astype(np.float32)
    for g in (0.0, 1.0, 1.5, 7.5):
        expected = torch.from_numpy(e_u) + g * (torch.from_numpy(e_c) - torch.from_numpy(e_u))
        np.testing.assert_allclose(
            testing.cfg_combine(e_u, e_c, g), expected.numpy(), rtol=RTOL, atol=ATOL
        )


def test_bad_scheduler_arguments_raise() -> None:
    from w2sd.errors import InvalidArgumentError

    alphas = np.linspace(0.99, 0.01, 1000, dtype=np.float32)
    kw = dict(
        num_train_timesteps=1000,
        alphas_cumprod=alphas,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    with pytest.raises(InvalidArgumentError, match="num_inference_steps"):
        _core.DdimSchedule(**kw, num_inference_steps=0)
    with pytest.raises(InvalidArgumentError, match="cannot exceed"):
        _core.DdimSchedule(**kw, num_inference_steps=1001)
    with pytest.raises(InvalidArgumentError, match="timestep_spacing"):
        _core.DdimSchedule(**{**kw, "timestep_spacing": "karras"}, num_inference_steps=10)
    with pytest.raises(InvalidArgumentError, match="prediction_type"):
        _core.DdimSchedule(**{**kw, "prediction_type": "sample"}, num_inference_steps=10)
    with pytest.raises(InvalidArgumentError, match="alphas_cumprod"):
        _core.DdimSchedule(**{**kw, "alphas_cumprod": alphas[:10]}, num_inference_steps=10)
