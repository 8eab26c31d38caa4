"""The CUDA side, checked without a GPU: the fused kernel math (the same host/device
functions), the device code in the built extension, the CUDA/TensorRT builds and the
errors for a backend this machine cannot run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

import w2sd
from conftest import has_cuda_device
from w2sd import BackendError, W2SDRuntime, _core, testing

ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("guidance", [1.0, 3.0, 7.5])
def test_fused_guided_update_matches_diffusers(prediction, guidance):  # type: ignore[no-untyped-def]
    """guided_ddim_update (what the CUDA kernel runs per element) == CFG + DDIMScheduler.step."""
    sched = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction,
    )
    sched.set_timesteps(10)
    gen = torch.Generator().manual_seed(3)
    t = int(sched.timesteps[4])
    x, e_u, e_c = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
    expected = sched.step(e_u + guidance * (e_c - e_u), t, x).prev_sample.numpy()
    a = float(sched.alphas_cumprod[t])
    a_next = float(sched.alphas_cumprod[t - 100])
    got = testing.guided_ddim_update(
        e_u.numpy(), e_c.numpy(), guidance, x.numpy(), a, a_next, prediction
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def _cuobjdump() -> str | None:
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import nvidia

        for base in nvidia.__path__:
            for cand in Path(base).glob("cu*/bin/cuobjdump"):
                return str(cand)
    except ImportError:
        return None
    return None


def test_extension_has_device_code_for_every_architecture():  # type: ignore[no-untyped-def]
    expected = os.environ.get("W2SD_EXPECT_CUDA") == "1"
    if not _core.cuda_compiled():
        assert not expected, "W2SD_EXPECT_CUDA=1 but the extension was built without CUDA"
        pytest.skip("this build has no CUDA (nvcc was not found at build time)")
    tool = _cuobjdump()
    if tool is None:
        assert not expected, "cuobjdump not found (pip install nvidia-cuda-cuobjdump)"
        pytest.skip("cuobjdump not found")
    out = subprocess.run(
        [tool, "--list-elf", _core.__file__], capture_output=True, text=True, check=True
    ).stdout
    for arch in ARCHS:
        assert arch in out, f"no {arch} cubin in {_core.__file__}:\n{out}"


def test_gpu_backends_match_the_machine():  # type: ignore[no-untyped-def]
    """With a CUDA device visible, the GPU backends must be available (a missing one fails
    here, with its reason, rather than skipping); without one, they are not, and each
    says why."""
    status = {s.name: s for s in w2sd.backend_status()}
    assert status["cpu"].available and status["cpu"].reason == ""
    if has_cuda_device():
        for backend in ("cuda", "tensorrt"):
            assert status[backend].available, (
                f"a CUDA device is visible but backend {backend!r} is not available: "
                f"{status[backend].reason}"
            )
        return
    assert _core.cuda_device_count() == 0
    assert not {"cuda", "tensorrt"} & set(w2sd.available_backends())
    for backend in ("cuda", "tensorrt"):
        assert not status[backend].available
        expected = "no CUDA device" if _core.cuda_compiled() else "no CUDA support"
        assert expected in status[backend].reason


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_unavailable_gpu_backend_is_a_clear_error(engine_dir, backend):  # type: ignore[no-untyped-def]
    if backend in w2sd.available_backends():
        pytest.skip(f"{backend} is available here")
    reason = {s.name: s.reason for s in w2sd.backend_status()}[backend]
    with pytest.raises(BackendError, match=f"backend '{backend}' is not available") as e:
        W2SDRuntime(engine_dir, backend=backend)
    assert reason and reason in str(e.value)


def test_build_cuda_writes_fp16_models_with_float32_io(engine_copy):  # type: ignore[no-untyped-def]
    import onnx

    proc = subprocess.run(
        [sys.executable, "-m", "w2sd_cli", "build", str(engine_copy), "--backend", "cuda"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((engine_copy / "manifest.json").read_text())
    entry = m["backends"]["cuda"]
    assert entry["precision"] == "fp16" and set(entry["files"]) == {
        "unet0",
        "unet1",
        "text_encoder0",
        "vae_decoder",
    }
    model = onnx.load(str(engine_copy / entry["files"]["unet0"]), load_external_data=False)
    types = {i.data_type for i in model.graph.initializer if len(i.dims) > 1}
    assert types == {onnx.TensorProto.FLOAT16}
    io = [v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)]
    assert set(io) == {onnx.TensorProto.FLOAT}
    assert "cpu" in m["backends"]  # the CPU build is untouched


def test_build_tensorrt_without_the_ep_is_a_clear_error(engine_copy):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT EP present")
    before = (engine_copy / "manifest.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "w2sd_cli", "build", str(engine_copy), "--backend", "tensorrt"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "TensorRT execution provider" in proc.stderr and "Traceback" not in proc.stderr
    assert (engine_copy / "manifest.json").read_bytes() == before


def test_tensorrt_profiles_cover_the_engine_range(engine_dir):  # type: ignore[no-untyped-def]
    from engines.tensorrt import profile_shapes
    from w2sd.manifest import load_manifest

    p = profile_shapes(load_manifest(engine_dir), max_batch=2)
    assert p["min"] == "sample:1x4x2x2,timestep:1,encoder_hidden_states:1x77x32"
    assert p["opt"] == "sample:2x4x8x8,timestep:1,encoder_hidden_states:2x77x32"
    assert p["max"] == "sample:4x4x128x128,timestep:1,encoder_hidden_states:4x77x32"
