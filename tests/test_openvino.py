"""Backend `openvino`: OpenVINO's own runtime (its C library, loaded by the core), in the same
process as export (tests/openvino_scenario.py). fp32 is held to the spec's fp32 bound; bf16
(CPUs with amx_bf16/avx512_bf16 only) to the reduced-precision row: image PSNR >= 30 dB vs the
fp32 reference, the latents' max rel diff reported. Skipped, with the reason, only where setup
did not install the openvino wheel; where it did (the stamp .w2sd-openvino in the venv, or
W2SD_EXPECT_OPENVINO=1), a library that is missing or a backend that does not load fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino_scenario
import pytest

from conftest import (
    PEER_GUIDANCE,
    _record,
    assert_images_match,
    assert_latents_close,
    relative_diff,
    runtime_peer_latents,
)
from engines.openvino import choose_precision
from w2sd import InvalidArgumentError
from w2sd.cpuinfo import BF16_FLAGS, cpu_flags
from w2sd.latents import initial_latents
from w2sd.openvino_library import openvino_c_library
from w2sd.spec_bounds import REDUCED_PRECISION_MIN_PSNR_DB
from w2sd_bench.runner import image_psnr_db

KW = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)
HAS_BF16 = bool(cpu_flags() & set(BF16_FLAGS))

# scripts/setup.sh writes this stamp when it has installed the OpenVINO backend.
SETUP_STAMP = Path(sys.prefix) / ".w2sd-openvino"
EXPECTED = os.environ.get("W2SD_EXPECT_OPENVINO") == "1" or SETUP_STAMP.is_file()
needs_library = pytest.mark.skipif(
    openvino_c_library() is None and not EXPECTED,
    reason="the openvino wheel is not installed (scripts/setup.sh installs it)",
)


def test_openvino_loads_where_setup_installed_it():  # type: ignore[no-untyped-def]
    """Never a skip where setup installed the backend: its library is there and a fresh
    process asking for 'openvino' has it available."""
    if not EXPECTED:
        pytest.skip("scripts/setup.sh did not install the openvino wheel here")
    assert openvino_c_library() is not None, f"{SETUP_STAMP} says installed; no library found"
    out = _fresh_process(
        "from w2sd import backend_status; s = {x.name: x for x in backend_status('openvino')}"
        "['openvino']; print(s.available, s.reason)"
    )
    assert out.startswith("True"), out


def _scenario(engine_dir: Path, tmp: Path, precision: str | None) -> tuple[dict, dict]:  # type: ignore[type-arg]
    copy = tmp / f"engine-{precision}"
    shutil.copytree(engine_dir, copy)
    return openvino_scenario.run(copy, precision)


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
def test_one_dynamic_model_per_unet_serves_every_shape(fp32_run, reference):  # type: ignore[no-untyped-def]
    """The build's default: each UNet loads as one dynamic-shape model (its weights held
    once), which runs the default request, another size and two prompts as faithfully."""
    got, build = fp32_run
    sessions = build["sessions"]
    assert build["unet_shape_sessions"] == 0
    assert sessions["at_load"] == sessions["after_other_shapes"] == ["dynamic"]
    for key, latents, prompt in (
        ("latents_48px", initial_latents(5, (1, 4, 6, 6)), "a red bicycle"),
        ("latents_two_prompts", initial_latents(6, (2, 4, 8, 8)), ["a red bicycle", "a cat"]),
    ):
        ref = reference.sample(prompt, latents=latents, output_type="latent", **KW)
        assert_latents_close(got[key], ref.latents)


@needs_library
def test_warm_up_runs_every_model_and_keeps_parity(fp32_run, reference):  # type: ignore[no-untyped-def]
    """warm_up() (what `w2sd serve` runs before taking requests) sends one short request
    through the text encoder, both UNet roles and the VAE; the request after it is as
    faithful as on a model that never ran."""
    got, _ = fp32_run
    stats = got["warm_up"]
    assert stats["unet_calls"] == 4 and stats["text_encode_s"] > 0 and stats["vae_decode_s"] > 0
    ref = reference.sample(
        "a red bicycle", latents=initial_latents(4, (1, 4, 8, 8)), output_type="latent", **KW
    )
    assert_latents_close(got["latents_after_warm_up"], ref.latents)


@needs_library
def test_static_shape_models_when_asked(fp32_run, reference):  # type: ignore[no-untyped-def]
    """unet_shape_sessions=2: the default request's shapes (recorded by the build) compiled
    static while loading; a new shape takes the second static place, then every other shape
    runs on one dynamic-shape model, as faithfully."""
    got, build = fp32_run
    sessions = build["sessions"]
    static = "sample[2,4,8,8],timestep[1],encoder_hidden_states[2,77,32]"
    static_48px = "sample[2,4,6,6],timestep[1],encoder_hidden_states[2,77,32]"
    # Both roles guided (7.5, 7.5 by default): one shape, batch 2, 64 px.
    assert [(s["unet"], s["batch"], s["height"]) for s in build["warm_unet_shapes"]] == [
        (0, 2, 8),
        (1, 2, 8),
    ]
    assert sessions["static_at_load"] == sessions["static_after_default_size"] == [static]
    # 48 px took the second static place; two prompts (batch 4) found none left.
    assert sessions["static_after_other_shapes"] == [static_48px, static, "dynamic"]
    two_prompts = ["a red bicycle", "a cat"]
    for key, latents, prompt in (
        ("static_latents", initial_latents(4, (1, 4, 8, 8)), "a red bicycle"),
        ("static_latents_48px", initial_latents(5, (1, 4, 6, 6)), "a red bicycle"),
        ("static_latents_two_prompts", initial_latents(6, (2, 4, 8, 8)), two_prompts),
    ):
        ref = reference.sample(prompt, latents=latents, output_type="latent", **KW)
        assert_latents_close(got[key], ref.latents)


@needs_library
def test_build_facts_cache_and_lanes(fp32_run):  # type: ignore[no-untyped-def]
    got, build = fp32_run
    assert build["precision"] == "fp32" and build["precision_reason"] == "asked for"
    assert build["format"] == "openvino-ir"
    # Converted once to IR, fp32 weights kept, checksummed; the cache is not.
    assert build["files"]["unet0"] == "openvino/unet0/model.xml"
    assert {"openvino/unet0/model.xml", "openvino/unet0/model.bin"} <= set(build["artifacts"])
    assert not any(a.startswith("openvino/cache") for a in build["artifacts"])
    assert build["mutable"] == ["openvino/cache"]
    # Dynamic-shape models compile without the cache (it would only add a hash of the
    # model to the load); static-shape ones go through it.
    assert got["cache_after_build"]["blobs"] == got["cache_after_dynamic"]["blobs"] == 0
    assert got["cache_after_static"]["blobs"] > 0
    # Weightless blobs (CACHE_MODE=OPTIMIZE_SIZE): the weights stay in the IR only; each
    # blob is a static-shape UNet's.
    assert got["cache_after_static"]["largest"] < got["unet_weight_bytes"] / 4
    np.testing.assert_array_equal(got["stale_cache_latents"], got["static_latents"])
    assert got["lanes_equal_sequential"]
    # OpenVINO sets and restores the locale while it compiles a static-shape model; two at
    # once left the process in "C" (and subprocess output undecodable) until they were
    # made to take turns.
    assert got["locale_kept"]


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


def _fresh_process(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter (nothing imported)."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@needs_library
def test_openvino_after_the_onnxruntime_module_made_a_session(fp32_run):  # type: ignore[no-untyped-def]
    """The ONNX Runtime OpenVINO build crashed after the onnxruntime module's first session;
    OpenVINO's own library shares the process with it (and with the ORT backends)."""
    _, build = fp32_run
    code = (
        "import sys, onnxruntime; from w2sd import W2SDRuntime\n"
        "onnxruntime.InferenceSession(sys.argv[1] + '/vae_decoder/model.onnx', "
        "providers=['CPUExecutionProvider'])\n"
        "rt = W2SDRuntime(sys.argv[1], backend='openvino')\n"
        "x = rt.sample('a cat', seed=1, num_inference_steps=2, reflection_steps=1, "
        "output_type='latent')\n"
        "W2SDRuntime(sys.argv[1], backend='cpu')\n"
        "print('ok', x.shape)\n"
    )
    assert _fresh_process(code, build["engine"]).split()[0] == "ok"


def test_availability_says_why_openvino_is_missing(monkeypatch):  # type: ignore[no-untyped-def]
    """No openvino wheel: the reason names the extra to install."""
    import importlib.util

    from w2sd import backends

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    status = backends.backend_status("openvino")[0]
    assert not status.available
    assert "openvino package is not installed" in status.reason
    assert "w2sd-runtime[openvino]" in status.reason


@needs_library
def test_bf16_build_refused_at_load_on_a_cpu_without_bf16(fp32_run, monkeypatch):  # type: ignore[no-untyped-def]
    """An engine built bf16 elsewhere, loaded on a CPU without bf16: refused with the reason."""
    from w2sd import BackendError, backend_options
    from w2sd.manifest import load_manifest

    m = load_manifest(fp32_run[1]["engine"])
    built = m.spec.backends["openvino"]
    monkeypatch.setattr(backend_options, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setitem(built.model_extra, "precision", "bf16")
    with pytest.raises(BackendError, match="its openvino build is bf16, but this CPU has none"):
        backend_options.load_options("openvino", m, built, backend_options.LoadChoices())
    monkeypatch.setitem(built.model_extra, "precision", "fp32")
    opts = backend_options.load_options("openvino", m, built, backend_options.LoadChoices())
    assert opts.provider_options["INFERENCE_PRECISION_HINT"] == "f32"
    assert opts.provider_options["CACHE_DIR"] == str(m.path("openvino/cache"))
    assert opts.provider_options["CACHE_MODE"] == "OPTIMIZE_SIZE"
    assert opts.library_path == str(openvino_c_library())


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


@needs_library
def test_ov_python_baseline_does_the_same_work(fp32_run, runtime):  # type: ignore[no-untyped-def]
    """The ov-python peer (the plain loop on OpenVINO's Python API, the same IR) computes what
    the runtime computes, or the ratio means nothing."""
    from w2sd_bench.ov_python import ov_python_loop

    x = initial_latents(2, (1, 4, 8, 8))
    got = ov_python_loop(fp32_run[1]["engine"]).sample("a cat", x, 10, 5, PEER_GUIDANCE)["latents"]
    ours = runtime_peer_latents(runtime, x)
    assert_latents_close(got, ours)
