"""GPU tests (``pytest -m gpu``): skipped without a CUDA device, ready for a machine with
one, where a missing GPU backend is a failure (with its reason), never a skip. Bounds
from ../shared/W2SD-SPEC.md: fp16 on GPU, max abs diff <= 2e-2 of max|ref| latents,
image PSNR >= 30 dB."""

from __future__ import annotations

import time

import numpy as np
import pytest

import w2sd
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents

pytestmark = pytest.mark.gpu

GPU_LATENT_RTOL = 2e-2
GPU_MIN_PSNR_DB = 30.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=["cuda", "tensorrt"])
def gpu_runtime(request, engine_dir):  # type: ignore[no-untyped-def]
    from w2sd.engines.build import build_engine

    backend = request.param
    status = {s.name: s for s in w2sd.backend_status()}[backend]
    if not status.available:
        pytest.fail(f"a CUDA device is visible but {backend} is not available: {status.reason}")
    build_engine(str(engine_dir), backend, log=lambda m: None)
    return W2SDRuntime(engine_dir, backend=backend, lanes=2)


@pytest.mark.parametrize("inversion", ["official", "exact"])
def test_fp16_parity_with_reference(gpu_runtime, reference, inversion):  # type: ignore[no-untyped-def]
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(
        num_inference_steps=10,
        reflection_steps=5,
        strong_guidance=7.5,
        weak_guidance=5.0,
        inversion=inversion,
    )
    lat = gpu_runtime.sample("a red bicycle", latents=x, output_type="latent", **kw)
    img = gpu_runtime.sample("a red bicycle", latents=x, output_type="np", **kw)
    ref = reference.sample("a red bicycle", latents=x, output_type="np", **kw)
    rel = np.abs(lat - ref.latents).max() / np.abs(ref.latents).max()
    assert rel <= GPU_LATENT_RTOL
    assert _psnr(img, ref.images) >= GPU_MIN_PSNR_DB


def test_device_loop_runs_every_unet_call(gpu_runtime):  # type: ignore[no-untyped-def]
    gpu_runtime.sample("a cat", seed=0, output_type="latent")
    assert gpu_runtime.last_stats["unet_calls"] == 10 + 2 * 5


def test_lanes_overlap_beats_one_after_another(gpu_runtime):  # type: ignore[no-untyped-def]
    reqs = [
        dict(
            prompt="a cat",
            seed=i,
            output_type="latent",
            num_inference_steps=25,
            reflection_steps=12,
        )
        for i in range(4)
    ]
    gpu_runtime.sample_many(reqs[:2], lanes=2)  # warm-up
    t0 = time.perf_counter()
    for r in reqs:
        gpu_runtime.sample(**r)
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    gpu_runtime.sample_many(reqs, lanes=2)
    overlapped = time.perf_counter() - t0
    assert overlapped < sequential


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_unconditional_denoiser_engine_on_the_gpu(backend, tmp_path):  # type: ignore[no-untyped-def]
    """A plain ONNX denoiser engine (no text, no VAE) on the device loop, against the spec's
    loop in numpy with exact mixture epsilons."""
    from test_denoiser import STEPS, STRONG_2D, WEAK_2D, _engine, _scheduler

    from w2sd.engines.build import build_engine
    from w2sd.gmm import numpy_w2sd
    from w2sd.manifest import SchedulerSpec

    status = {s.name: s for s in w2sd.backend_status()}[backend]
    if not status.available:
        pytest.fail(f"a CUDA device is visible but {backend} is not available: {status.reason}")
    engine = _engine(tmp_path, "gpu-gmm", STRONG_2D, WEAK_2D)
    build_engine(str(engine), backend, log=lambda m: None)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    got = W2SDRuntime(engine, backend=backend).sample(latents=x, output_type="latent")
    sched = SchedulerSpec.model_validate(_scheduler(tmp_path)[1])
    ref = numpy_w2sd(sched, STRONG_2D, WEAK_2D, STRONG_2D, x, STEPS, 5, "official")
    assert np.abs(got - ref).max() / np.abs(ref).max() <= GPU_LATENT_RTOL
