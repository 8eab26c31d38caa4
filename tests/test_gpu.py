"""GPU tests (``pytest -m gpu``): skipped without a CUDA device, ready for a machine with
one, where a missing GPU backend is a failure (with its reason), never a skip. Bounds:
the spec's fp16-on-GPU row (w2sd.spec_bounds: latents, image PSNR)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import w2sd
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents
from w2sd.spec_bounds import FP16_GPU_LATENT_RTOL, REDUCED_PRECISION_MIN_PSNR_DB

pytestmark = pytest.mark.gpu


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=["cuda", "tensorrt"])
def gpu_runtime(request, engine_dir):  # type: ignore[no-untyped-def]
    from engines.build import build_engine

    backend = request.param
    status = {s.name: s for s in w2sd.backend_status()}[backend]
    if not status.available:
        pytest.fail(f"a CUDA device is visible but {backend} is not available: {status.reason}")
    build_engine(str(engine_dir), backend, log=lambda m: None)
    return W2SDRuntime(engine_dir, backend=backend, lanes=2)


@pytest.mark.parametrize(
    "inversion, weak_guidance",
    # weak_guidance 1.0: the weak role is unguided and padded to the guided batch.
    [("official", 5.0), ("exact", 5.0), ("official", 1.0)],
)
def test_fp16_parity_with_reference(gpu_runtime, reference, inversion, weak_guidance):  # type: ignore[no-untyped-def]
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(
        num_inference_steps=10,
        reflection_steps=5,
        strong_guidance=7.5,
        weak_guidance=weak_guidance,
        inversion=inversion,
    )
    lat = gpu_runtime.sample("a red bicycle", latents=x, output_type="latent", **kw)
    img = gpu_runtime.sample("a red bicycle", latents=x, output_type="np", **kw)
    ref = reference.sample("a red bicycle", latents=x, output_type="np", **kw)
    rel = np.abs(lat - ref.latents).max() / np.abs(ref.latents).max()
    assert rel <= FP16_GPU_LATENT_RTOL
    assert _psnr(img, ref.images) >= REDUCED_PRECISION_MIN_PSNR_DB


def test_cuda_graph_replays_equal_launched_calls_bit_for_bit(engine_dir):  # type: ignore[no-untyped-def]
    """UNet calls through CUDA graphs (the cuda build's default: captured on first use,
    then replayed) give the same latents, bit for bit, as the same engine launching every
    kernel; the guided and the padded-unguided batch share one graph per lane."""
    from engines.build import build_engine

    build_engine(str(engine_dir), "cuda", log=lambda m: None)
    graphed = W2SDRuntime(engine_dir, backend="cuda", lanes=2)
    launched = W2SDRuntime(engine_dir, backend="cuda", lanes=2, cuda_graphs=False)
    x = initial_latents(5, (1, 4, 8, 8))
    kw = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)
    want = launched.sample("a red bicycle", latents=x, output_type="latent", **kw)
    for _ in range(2):  # the first request captures, the second only replays
        got = graphed.sample("a red bicycle", latents=x, output_type="latent", **kw)
        assert np.array_equal(got, want)
    sessions = graphed.unet_sessions(0)
    assert sessions[0].startswith("cuda-graph 0: [2,4,8,8]"), sessions
    assert launched.unet_sessions(0) == ["launched"]


def test_device_loop_runs_every_unet_call(gpu_runtime):  # type: ignore[no-untyped-def]
    gpu_runtime.sample("a cat", seed=0, output_type="latent")
    assert gpu_runtime.last_stats["unet_calls"] == 10 + 2 * 5


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _overlap_figure(rt, reqs: list[dict], lanes: int) -> tuple[float, float]:  # type: ignore[type-arg]
    """(sequential s, overlapped s) after warming every lane: each lane's sessions and
    workspace are made on its first request, so all of them serve one first."""
    rt.sample_many(reqs[:lanes], lanes=lanes)
    assert {s["lane"] for s in rt.last_many_stats} == set(range(lanes)), rt.last_many_stats
    sequential = _timed(lambda: [rt.sample(**r) for r in reqs])
    overlapped = _timed(lambda: rt.sample_many(reqs, lanes=lanes))
    return sequential, overlapped


def test_lanes_overlap_beats_one_after_another(gpu_runtime):  # type: ignore[no-untyped-def]
    """512 px (64x64 latents) on the tiny UNet: two lanes finish four requests sooner than
    one request after another."""
    reqs = [
        dict(
            prompt="a cat",
            seed=i,
            output_type="latent",
            height=512,
            width=512,
            num_inference_steps=25,
            reflection_steps=12,
        )
        for i in range(4)
    ]
    sequential, overlapped = _overlap_figure(gpu_runtime, reqs, lanes=2)
    print(
        f"lanes: sequential {sequential:.3f} s, 2 lanes {overlapped:.3f} s, "
        f"{sequential / overlapped:.2f}x"
    )
    assert overlapped < sequential


@pytest.mark.perf
@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_lanes_throughput_on_a_real_unet(backend, tmp_path):  # type: ignore[no-untyped-def]
    """The SD 1.5 architecture at 256 px (the bench's sd15-256 workload): two lanes give at
    least 1.3x the throughput of one request after another."""
    from w2sd_bench.runner import default_cache_dir
    from w2sd_bench.workloads import prepare

    engine = prepare("sd15-256", default_cache_dir(), log=lambda m: None, backend=backend)
    rt = W2SDRuntime(engine, backend=backend, lanes=2)
    reqs = [dict(prompt="a cat", seed=i, output_type="latent") for i in range(6)]
    sequential, overlapped = _overlap_figure(rt, reqs, lanes=2)
    print(
        f"{backend} sd15-256: sequential {sequential:.3f} s, 2 lanes {overlapped:.3f} s, "
        f"{sequential / overlapped:.2f}x"
    )
    assert sequential / overlapped >= 1.3


def test_concurrent_sample_calls_take_different_lanes(gpu_runtime):  # type: ignore[no-untyped-def]
    """sample() from two threads: two lanes (streams, sessions, workspaces), and each
    result equals the same request run alone."""
    alone = [gpu_runtime.sample("a cat", seed=i, output_type="latent") for i in range(2)]
    out: dict[int, tuple[np.ndarray, int]] = {}

    def run(i: int) -> None:
        r = gpu_runtime.run(w2sd.SampleRequest(prompt="a cat", seed=i, output_type="latent"))
        out[i] = (r.output, r.stats["lane"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        np.testing.assert_array_equal(out[i][0], alone[i])
    assert {lane for _, lane in out.values()} <= {0, 1}


def test_unet_time_is_device_time_and_progress_reports_finished_steps(gpu_runtime):  # type: ignore[no-untyped-def]
    seen: list[int] = []
    result = gpu_runtime.run(
        w2sd.SampleRequest(
            prompt="a cat",
            seed=0,
            output_type="latent",
            num_inference_steps=10,
            reflection_steps=5,
            callback=lambda d, t: seen.append(d) or True,
        )
    )
    assert seen == list(range(1, 11))
    assert 0 < result.stats["unet_s"] <= result.stats["loop_s"]


def test_cancelling_on_the_gpu_stops_the_loop(gpu_runtime):  # type: ignore[no-untyped-def]
    with pytest.raises(w2sd.CancelledError):
        gpu_runtime.sample("a cat", seed=0, output_type="latent", callback=lambda d, t: d < 3)
    gpu_runtime.sample("a cat", seed=0, output_type="latent")  # the lane is usable after


def test_a_device_other_than_zero(engine_dir):  # type: ignore[no-untyped-def]
    """Every call selects the backend's device (lane and caller threads start on device 0)."""
    count = w2sd._core.cuda_device_count()
    if count < 2:
        pytest.skip(f"needs two CUDA devices ({count} visible)")
    rt = W2SDRuntime(engine_dir, backend="cuda", device_id=count - 1, lanes=2)
    x = initial_latents(4, (1, 4, 8, 8))
    one = rt.sample("a cat", latents=x, output_type="latent")
    many = rt.sample_many([dict(prompt="a cat", latents=x, output_type="latent")] * 2, lanes=2)
    for got in many:
        np.testing.assert_array_equal(got, one)


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_sdxl_fp16_parity_with_force_upcast(backend, zoo, tmp_path):  # type: ignore[no-untyped-def]
    """SDXL-shaped, VAE with force_upcast: the VAE stays fp32 (fp16 gave NaN/black images
    on SDXL), the UNet's time embeddings and softmax stay fp32; within the GPU bounds."""
    import shutil

    from engines.build import build_engine

    base = zoo.pipeline("sdxl", 1)
    engine = tmp_path / "sdxl"
    shutil.copytree(zoo.engine("sdxl-condition", strong=base, weak=base, weak_guidance=1.0), engine)
    entry = build_engine(str(engine), backend, log=lambda m: None)
    assert entry["model_precision"]["vae_decoder"] == "fp32"
    rt = W2SDRuntime(engine, backend=backend)
    ref = zoo.reference("sdxl-condition", strong=base, weak=base)
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=1.0)
    lat = rt.sample("a red bicycle", latents=x, output_type="latent", **kw)
    img = rt.sample("a red bicycle", latents=x, output_type="np", **kw)
    expected = ref.sample("a red bicycle", latents=x, output_type="np", **kw)
    assert np.isfinite(lat).all() and np.isfinite(img.astype(np.float32)).all()
    assert (
        np.abs(lat - expected.latents).max() / np.abs(expected.latents).max()
        <= FP16_GPU_LATENT_RTOL
    )
    assert _psnr(img, expected.images) >= REDUCED_PRECISION_MIN_PSNR_DB


def test_tensorrt_serving_builds_nothing_and_refuses_beyond_the_profile(engine_copy):  # type: ignore[no-untyped-def]
    """Loaded from its EP-context models (relative engine paths) the TensorRT engine builds
    nothing and writes nothing under tensorrt/ (the checksums still verify); a batch
    beyond --max-batch is refused before the loop."""
    from engines.build import build_engine

    build_engine(str(engine_copy), "tensorrt", log=lambda m: None, max_batch=1)
    moved = engine_copy.parent / "moved"
    engine_copy.rename(moved)  # context paths are relative: the dir can move
    before = {p: p.stat().st_mtime_ns for p in (moved / "tensorrt").rglob("*") if p.is_file()}
    rt = W2SDRuntime(moved, backend="tensorrt", verify_checksums=True)
    t0 = time.perf_counter()
    rt.sample("a cat", seed=0, output_type="np")
    assert time.perf_counter() - t0 < 60  # no engine build on the first request
    after = {p: p.stat().st_mtime_ns for p in (moved / "tensorrt").rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(w2sd.InvalidArgumentError, match="takes at most 1"):
        rt.sample(["a cat", "a dog"], seed=0, output_type="latent")
    W2SDRuntime(moved, backend="tensorrt", verify_checksums=True)  # still verifies


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_unconditional_denoiser_engine_on_the_gpu(backend, tmp_path):  # type: ignore[no-untyped-def]
    """A plain ONNX denoiser engine (no text, no VAE) on the device loop, against the spec's
    loop in numpy with exact mixture epsilons."""
    from test_denoiser import STEPS, STRONG_2D, WEAK_2D, _engine, _scheduler

    from engines.build import build_engine
    from w2sd.manifest import SchedulerSpec
    from w2sd_studies.gmm import numpy_w2sd

    status = {s.name: s for s in w2sd.backend_status()}[backend]
    if not status.available:
        pytest.fail(f"a CUDA device is visible but {backend} is not available: {status.reason}")
    engine = _engine(tmp_path, "gpu-gmm", STRONG_2D, WEAK_2D)
    build_engine(str(engine), backend, log=lambda m: None)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    got = W2SDRuntime(engine, backend=backend).sample(latents=x, output_type="latent")
    sched = SchedulerSpec.model_validate(_scheduler(tmp_path)[1])
    ref = numpy_w2sd(sched, STRONG_2D, WEAK_2D, STRONG_2D, x, STEPS, 5, "official")
    assert np.abs(got - ref).max() / np.abs(ref).max() <= FP16_GPU_LATENT_RTOL


@pytest.mark.parametrize("unet_dtype", ["float32", "float16"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("guided", [True, False])
def test_update_kernel_equals_the_host_math_bit_for_bit(unet_dtype, prediction, guided):  # type: ignore[no-untyped-def]
    """The device loop's fused kernel and ddim_math.h on the host: both built without FMA
    contraction, so the same float32 arithmetic gives the same bits. An odd size (more
    elements than one grid covers) checks the grid-stride loop and the tail."""
    from w2sd import testing

    n = 65535 * 256 + 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal(n, dtype=np.float32)
    e = rng.standard_normal((2 if guided else 1) * n, dtype=np.float32)
    a, a_next, g = 0.4831, 0.6402, 7.5
    got = testing.cuda_guided_ddim_update(e, guided, g, x, a, a_next, prediction, unet_dtype)
    # What the kernel reads: the UNet output in its dtype.
    e_seen = e.astype(np.float16).astype(np.float32) if unet_dtype == "float16" else e
    if guided:
        want = testing.guided_ddim_update(e_seen[:n], e_seen[n:], g, x, a, a_next, prediction)
    else:
        # The unguided update is ddim_update(e): e + 1 * (e - e) is e exactly.
        want = testing.guided_ddim_update(e_seen, e_seen, 1.0, x, a, a_next, prediction)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("twice", [True, False])
def test_pack_sample_kernel(dtype, twice):  # type: ignore[no-untyped-def]
    from w2sd import testing

    x = np.random.default_rng(1).standard_normal(4 * 64 * 64 + 5, dtype=np.float32)
    got = np.frombuffer(testing.cuda_pack_sample(x, dtype, twice), dtype=dtype)
    want = np.concatenate([x, x]) if twice else x
    np.testing.assert_array_equal(got, want.astype(dtype))
