"""Backend `openvino`: ONNX Runtime's OpenVINO EP through the core's C API, on the OpenVINO
wheel's library that scripts/setup.sh installs beside the onnxruntime module. The core
runs it in a subprocess (tests/openvino_scenario.py) that never imports the Python
onnxruntime module. fp32 is held to the spec's fp32 bound; bf16 (CPUs with
amx_bf16/avx512_bf16 only) to the reduced-precision row: image PSNR >= 30 dB vs the fp32
reference, the latents' max rel diff reported. Skipped, with the reason, only where setup
did not install the OpenVINO backend; where it did (the stamp .w2sd-openvino in the venv, or
W2SD_EXPECT_OPENVINO=1), a library that is missing or does not load is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import _record, assert_images_match, assert_latents_close, relative_diff
from engines.openvino import choose_precision
from w2sd import InvalidArgumentError
from w2sd.cpuinfo import BF16_FLAGS, cpu_flags
from w2sd.latents import initial_latents
from w2sd.ort_library import openvino_cache_support, openvino_library
from w2sd.spec_bounds import REDUCED_PRECISION_MIN_PSNR_DB
from w2sd_bench.runner import image_psnr_db

SCENARIO = Path(__file__).with_name("openvino_scenario.py")
KW = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)
HAS_BF16 = bool(cpu_flags() & set(BF16_FLAGS))

# scripts/setup.sh writes this stamp when it has installed the OpenVINO backend.
SETUP_STAMP = Path(sys.prefix) / ".w2sd-openvino"
EXPECTED = os.environ.get("W2SD_EXPECT_OPENVINO") == "1" or SETUP_STAMP.is_file()
needs_library = pytest.mark.skipif(
    openvino_library() is None and not EXPECTED,
    reason="the OpenVINO wheel's library is not installed (scripts/setup.sh installs it)",
)


def test_openvino_loads_where_setup_installed_it():  # type: ignore[no-untyped-def]
    """Never a skip where setup installed the backend: its library is there and a fresh
    process asking for 'openvino' gets the OpenVINO EP."""
    if not EXPECTED:
        pytest.skip("scripts/setup.sh did not install the OpenVINO backend here")
    assert openvino_library() is not None, f"{SETUP_STAMP} says installed; no library found"
    out = _fresh_process(
        "from w2sd import backend_status; s = {x.name: x for x in backend_status('openvino')}"
        "['openvino']; print(s.available, s.reason)"
    )
    assert out.startswith("True"), out


def _scenario(engine_dir: Path, tmp: Path, precision: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    copy = tmp / f"engine-{precision}"
    shutil.copytree(engine_dir, copy)
    out = tmp / f"{precision}.npz"
    env = {**os.environ, "W2SD_ORT_LIBRARY": str(openvino_library())}
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), str(copy), precision, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out)), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fp32_run(engine_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    return _scenario(engine_dir, tmp_path_factory.mktemp("ov"), "fp32")


@needs_library
@pytest.mark.parametrize("inversion", ["official", "exact"])
def test_fp32_parity_with_reference(fp32_run, reference, inversion):  # type: ignore[no-untyped-def]
    got, _ = fp32_run
    x = initial_latents(4, (1, 4, 8, 8))
    ref = reference.sample("a red bicycle", latents=x, output_type="np", inversion=inversion, **KW)
    assert_latents_close(got[f"latents_{inversion}"], ref.latents)
    assert_images_match(got[f"images_{inversion}"], ref.images)


@needs_library
def test_other_shapes_run_on_the_dynamic_session(fp32_run, reference):  # type: ignore[no-untyped-def]
    """The UNet is compiled for the default request's shapes while loading (static shapes);
    a new shape gets a static session of its own while there is room (2 per UNet), then
    every other shape runs on one dynamic-shape session, as faithfully."""
    got, build = fp32_run
    sessions = build["sessions"]
    static = "sample[2,4,8,8],timestep[1],encoder_hidden_states[2,77,32]"
    static_48px = "sample[2,4,6,6],timestep[1],encoder_hidden_states[2,77,32]"
    # Both roles guided (7.5, 7.5 by default): one shape, batch 2, 64 px.
    assert [(s["unet"], s["batch"], s["height"]) for s in build["warm_unet_shapes"]] == [
        (0, 2, 8),
        (1, 2, 8),
    ]
    assert sessions["at_load"] == sessions["after_default_size"] == [static]
    # 48 px took the second static place; two prompts (batch 4) found none left.
    assert sessions["after_other_shapes"] == [static_48px, static, "dynamic"]
    assert sessions["dynamic_only"] == ["dynamic"]
    for key, latents, prompt in (
        ("latents_48px", initial_latents(5, (1, 4, 6, 6)), "a red bicycle"),
        ("latents_two_prompts", initial_latents(6, (2, 4, 8, 8)), ["a red bicycle", "a cat"]),
        ("latents_dynamic_only", initial_latents(4, (1, 4, 8, 8)), "a red bicycle"),
    ):
        ref = reference.sample(prompt, latents=latents, output_type="latent", **KW)
        assert_latents_close(got[key], ref.latents)


@needs_library
def test_build_facts_cache_and_lanes(fp32_run):  # type: ignore[no-untyped-def]
    got, build = fp32_run
    assert build["precision"] == "fp32" and build["precision_reason"] == "asked for"
    assert json.loads(build["provider_options"]["load_config"]) == {
        "CPU": {"INFERENCE_PRECISION_HINT": "f32"}
    }
    assert build["files"]["unet0"] == "unet0/model.onnx"  # the exported graph, not ORT's fusions
    if bool(got["cache_supported"]):
        assert int(got["cache_blobs"]) > 0  # compiled at build time
    else:  # no cache OpenVINO would only rewrite on every load
        assert int(got["cache_blobs"]) == int(got["cache_blobs_after_reload"]) == 0
    np.testing.assert_array_equal(got["stale_cache_latents"], got["latents_official"])
    assert bool(got["lanes_equal_sequential"])


@needs_library
def test_bf16_image_psnr(engine_dir, reference, tmp_path):  # type: ignore[no-untyped-def]
    if not HAS_BF16:
        pytest.skip("this CPU has no bf16 instructions (amx_bf16/avx512_bf16)")
    got, build = _scenario(engine_dir, tmp_path, "bf16")
    assert build["precision"] == "bf16"
    x = initial_latents(4, (1, 4, 8, 8))
    ref = reference.sample("a red bicycle", latents=x, output_type="np", **KW)
    _record("bf16_latents_rel_diff", relative_diff(got["latents_official"], ref.latents))
    psnr = image_psnr_db(got["images_official"], ref.images)
    _record("bf16_image_psnr_db", psnr)
    assert psnr >= REDUCED_PRECISION_MIN_PSNR_DB


def _fresh_process(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `code` in a fresh interpreter (nothing imported), without W2SD_ORT_LIBRARY."""
    base = {k: v for k, v in os.environ.items() if k != "W2SD_ORT_LIBRARY"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@needs_library
def test_openvino_picks_its_library_in_a_fresh_process(fp32_run):  # type: ignore[no-untyped-def]
    """No W2SD_ORT_LIBRARY needed: a process whose first backend is 'openvino' runs on the
    OpenVINO build, and may import the onnxruntime module afterwards."""
    _, build = fp32_run
    out = _fresh_process(
        "import sys; from w2sd import W2SDRuntime; from w2sd.ort_library import "
        "find_ort_library; W2SDRuntime(sys.argv[1], backend='openvino').sample('a cat', "
        "seed=1, num_inference_steps=2, reflection_steps=1, output_type='latent'); "
        "print(find_ort_library()); import onnxruntime; W2SDRuntime(sys.argv[1], "
        "backend='openvino'); W2SDRuntime(sys.argv[1], backend='cpu'); print('ok')",
        build["engine"],
    )
    assert out.split() == [str(openvino_library()), "ok"]


@needs_library
def test_openvino_after_the_onnxruntime_module_is_refused_not_crashed(fp32_run):  # type: ignore[no-untyped-def]
    """A process whose onnxruntime module made a session first: the OpenVINO build there
    crashed (segfault). Asked for by backend or by W2SD_ORT_LIBRARY, it is an error."""
    _, build = fp32_run
    code = (
        "import sys, onnxruntime; from w2sd import BackendError, W2SDRuntime\n"
        "onnxruntime.InferenceSession(sys.argv[1] + '/vae_decoder/model.onnx', "
        "providers=['CPUExecutionProvider'])\n"
        "try:\n    W2SDRuntime(sys.argv[1], backend='openvino')\n"
        "except BackendError as e:\n    print(e)\n"
    )
    out = _fresh_process(code, build["engine"])
    assert "has no OpenVINOExecutionProvider" in out and "has not imported the onnxruntime" in out
    forced = _fresh_process(
        code, build["engine"], env={"W2SD_ORT_LIBRARY": str(openvino_library())}
    )
    assert "cannot be loaded after this process imported the onnxruntime Python module" in forced


def test_cache_only_where_openvino_can_read_it_back(tmp_path):  # type: ignore[no-untyped-def]
    """OpenVINO's CPU plugin caches compiled models as OpenVINO IR: without the IR frontend
    beside the library (the onnxruntime-openvino 1.24.1 wheel) every cached load failed,
    compiled again and rewrote the cache."""
    capi = tmp_path / "capi"
    capi.mkdir()
    library = capi / "libonnxruntime.so.1.24.1"
    for name in (library.name, "libopenvino.so.2541", "libopenvino_onnx_frontend.so.2541"):
        (capi / name).touch()
    supported, why = openvino_cache_support(library)
    assert not supported and "libopenvino_ir_frontend" in why
    (capi / "libopenvino_ir_frontend.so.2541").touch()
    assert openvino_cache_support(library) == (True, "")


def test_default_unet_shapes_follow_the_roles(engine_dir):  # type: ignore[no-untyped-def]
    """Compiled while loading: each UNet at the default size, batch 2 for a guided role and
    batch 1 for one whose guidance is 1 (its conditional pass alone)."""
    from engines.openvino import default_unet_shapes
    from w2sd import testing
    from w2sd.manifest import load_manifest

    m = load_manifest(engine_dir)
    text = {"text_len": 77, "text_dim": 32}
    at_64px = {"channels": 4, "height": 8, "width": 8, **text}
    assert default_unet_shapes(m) == [
        {"unet": 0, "batch": 2, **at_64px},
        {"unet": 1, "batch": 2, **at_64px},
    ]
    # A condition gap: one UNet, the weak role unguided.
    for role in m.spec.roles.values():
        role.unet = 0
    m.spec.roles["weak"].guidance = 1.0
    m.spec.image.default_height = 96
    shapes = default_unet_shapes(m)
    assert [(s["unet"], s["batch"], s["height"], s["width"]) for s in shapes] == [
        (0, 1, 12, 8),
        (0, 2, 12, 8),
    ]
    names = ["sample", "timestep", "encoder_hidden_states"]
    assert testing.reshape_input_option(
        names, {k: v for k, v in shapes[0].items() if k != "unet"}
    ) == ("sample[1,4,12,8],timestep[1],encoder_hidden_states[1,77,32]")
    sdxl = {"batch": 2, "channels": 4, "height": 8, "width": 8, **text, "pooled_dim": 64}
    sdxl["time_ids_dim"] = 6
    assert testing.reshape_input_option([*names, "text_embeds", "time_ids"], sdxl) == (
        "sample[2,4,8,8],timestep[1],encoder_hidden_states[2,77,32],text_embeds[2,64],time_ids[2,6]"
    )
    with pytest.raises(InvalidArgumentError, match="does not match the UNet's 3 inputs"):
        testing.reshape_input_option(names, {"batch": 1, "channels": 4, "height": 8, "width": 8})


def test_precision_follows_the_cpu():  # type: ignore[no-untyped-def]
    assert choose_precision(None, {"avx2", "amx_bf16"}) == ("bf16", "this CPU has amx_bf16")
    assert choose_precision(None, {"avx2"})[0] == "fp32"
    assert choose_precision("fp32", {"amx_bf16"}) == ("fp32", "asked for")
    with pytest.raises(InvalidArgumentError, match="none of amx_bf16, avx512_bf16") as e:
        choose_precision("bf16", {"avx2"})
    assert e.value.param == "precision"
    with pytest.raises(InvalidArgumentError):
        choose_precision("fp16", {"amx_bf16"})


def test_openvino_is_refused_by_a_library_without_it(engine_dir):  # type: ignore[no-untyped-def]
    """This process's core runs the onnxruntime package's library: no OpenVINO EP, and the
    reason says how to get it."""
    from w2sd import BackendError, W2SDRuntime, backend_status

    status = {s.name: s for s in backend_status()}["openvino"]
    if status.available:
        pytest.skip("this process's ONNX Runtime has the OpenVINO EP")
    assert "OpenVINOExecutionProvider" in status.reason
    with pytest.raises(BackendError, match="backend 'openvino' is not available"):
        W2SDRuntime(engine_dir, backend="openvino")
