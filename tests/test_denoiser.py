"""Engines from plain ONNX denoisers (W2SD-SPEC, "Models that are not Stable Diffusion"):
the contract check at export, unconditional sampling on every backend, and the runtime's
loop against the spec's loop written again in numpy (w2sd.gmm.numpy_w2sd) with exact
Gaussian-mixture epsilons, for shapes from (B, 1, 1, 1) up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import assert_latents_close
from engines.build import build_engine
from export.onnx_denoiser import OnnxExportOptions, export_onnx_engine, scheduler_facts
from w2sd import W2SDRuntime
from w2sd.errors import InvalidArgumentError
from w2sd.manifest import SchedulerSpec
from w2sd.openvino_library import openvino_c_library
from w2sd_studies.gmm import SCHEDULER_CONFIG, GaussianMixture, numpy_w2sd, onnx_denoiser

STEPS = 10
MEANS_1D = ((-2.0,), (2.0,))
STRONG_1D = GaussianMixture((0.35, 0.65), MEANS_1D, 0.5)
WEAK_1D = GaussianMixture((0.2, 0.8), MEANS_1D, 0.5)
MEANS_2D = ((-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0))
STRONG_2D = GaussianMixture((0.1, 0.2, 0.3, 0.4), MEANS_2D, 0.6)
WEAK_2D = GaussianMixture((0.05, 0.15, 0.3, 0.5), MEANS_2D, 0.6)


def _scheduler(tmp: Path, prediction_type: str = "epsilon") -> tuple[Path, dict]:  # type: ignore[type-arg]
    path = tmp / f"scheduler-{prediction_type}.json"
    path.write_text(json.dumps({**SCHEDULER_CONFIG, "prediction_type": prediction_type}))
    return path, scheduler_facts(path)


def _engine(
    tmp: Path,
    name: str,
    strong: GaussianMixture,
    weak: GaussianMixture,
    prediction_type: str = "epsilon",
) -> Path:
    sched_path, facts = _scheduler(tmp, prediction_type)
    s, w = tmp / f"{name}-strong.onnx", tmp / f"{name}-weak.onnx"
    onnx.save(onnx_denoiser(strong, facts["alphas_cumprod"], prediction_type), str(s))
    # The weak model declares a per-sample (B,) timestep: export normalises it.
    onnx.save(
        onnx_denoiser(weak, facts["alphas_cumprod"], prediction_type, per_sample_timestep=True),
        str(w),
    )
    out = tmp / f"{name}-engine"
    export_onnx_engine(
        OnnxExportOptions(
            strong=s,
            weak=w,
            out=out,
            scheduler_config=sched_path,
            num_inference_steps=STEPS,
            reflection_steps=5,
            log=lambda m: None,
        )
    )
    build_engine(str(out), "cpu", log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("denoiser")


@pytest.fixture(scope="module")
def engine_1d(tmp):  # type: ignore[no-untyped-def]
    return _engine(tmp, "gmm1d", STRONG_1D, WEAK_1D)


@pytest.fixture(scope="module")
def engine_2d(tmp):  # type: ignore[no-untyped-def]
    return _engine(tmp, "gmm2d", STRONG_2D, WEAK_2D)


@pytest.fixture(scope="module")
def sched(tmp):  # type: ignore[no-untyped-def]
    return SchedulerSpec.model_validate(_scheduler(tmp)[1])


def _latents(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("inversion", ["official", "exact"])
@pytest.mark.parametrize("reflection", [0, 5, STEPS - 1])
def test_1d_runtime_matches_numpy_loop(engine_1d, sched, inversion, reflection):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(engine_1d)
    x = _latents((4000, 1, 1, 1))
    got = rt.sample(
        latents=x, output_type="latent", reflection_steps=reflection, inversion=inversion
    )
    ref = numpy_w2sd(sched, STRONG_1D, WEAK_1D, STRONG_1D, x, STEPS, reflection, inversion)
    assert_latents_close(got, ref.astype(np.float32))
    assert rt.last_stats["unet_calls"] == STEPS + 2 * reflection


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (3, 2, 3, 5), (2, 2, 16, 7)])
def test_2d_any_spatial_shape_matches_numpy_loop(engine_2d, sched, shape):  # type: ignore[no-untyped-def]
    x = _latents(shape, seed=sum(shape))
    got = W2SDRuntime(engine_2d).sample(latents=x, output_type="latent")
    ref = numpy_w2sd(sched, STRONG_2D, WEAK_2D, STRONG_2D, x, STEPS, 5, "official")
    assert_latents_close(got, ref.astype(np.float32))


def test_reflection_changes_the_result_and_w2sd_differs_from_ddim(engine_1d):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(engine_1d)
    x = _latents((2000, 1, 1, 1))
    ddim = rt.sample(latents=x, output_type="latent", reflection_steps=0)
    w2sd = rt.sample(latents=x, output_type="latent", reflection_steps=5)
    assert float(np.abs(ddim - w2sd).max()) > 0.1


@pytest.mark.parametrize("inversion", ["official", "exact"])
def test_v_prediction_engine_matches_numpy_loop(tmp, inversion):  # type: ignore[no-untyped-def]
    v_engine = _engine(tmp, f"gmm1d-v-{inversion}", STRONG_1D, WEAK_1D, "v_prediction")
    spec = json.loads((v_engine / "manifest.json").read_text())["scheduler"]
    assert spec["prediction_type"] == "v_prediction"
    x = _latents((1000, 1, 1, 1), seed=3)
    got = W2SDRuntime(v_engine).sample(latents=x, output_type="latent", inversion=inversion)
    ref = numpy_w2sd(
        SchedulerSpec.model_validate(spec), STRONG_1D, WEAK_1D, STRONG_1D, x, STEPS, 5, inversion
    )
    assert_latents_close(got, ref.astype(np.float32))


def test_a_denoiser_engine_has_no_request_of_its_own_to_warm_up(engine_1d):  # type: ignore[no-untyped-def]
    assert W2SDRuntime(engine_1d).warm_up() == {}


def test_engine_dir_records_an_unconditional_denoiser(engine_1d):  # type: ignore[no-untyped-def]
    m = json.loads((engine_1d / "manifest.json").read_text())
    assert m["family"] == "onnx" and m["text"] is None and m["models"]["vae_decoder"] is None
    assert m["denoiser"] == {"sample_shape": [1, None, None], "conditional": False}
    assert [u["roles"] for u in m["unets"]] == [["strong", "denoiser"], ["weak"]]
    assert m["export_checks"] == {"unet0": 0.0, "unet1": 0.0}
    rt = W2SDRuntime(engine_1d)
    assert rt.num_unet_sessions == 2 and rt.num_text_encoder_sessions == 0
    for rel in ("unet0/model.onnx", "unet1/model.onnx"):
        model = onnx.load(str(engine_1d / rel))
        assert [i.name for i in model.graph.input] == ["sample", "timestep"]
        assert [o.name for o in model.graph.output] == ["out_sample"]


@pytest.mark.parametrize(
    "options, param, words",
    [
        ({"prompt": "a cat"}, "prompt", "unconditional"),
        ({"weak_prompt": "a cat"}, "weak_prompt", "unconditional"),
        ({"strong_guidance": 7.5}, "strong_guidance", "guidance must be 1"),
        ({"weak_lora_scale": 1.0}, "weak_lora_scale", "no LoRA"),
        ({"output_type": "pil"}, "output_type", "no VAE decoder"),
        ({"latents": None}, "latents", "latents are required"),
        ({"seed": 3}, "seed", "from `latents`"),
        ({"latents": np.zeros((2, 3, 1, 1), np.float32)}, "latents", "(B, 1, any, any)"),
    ],
)
def test_request_errors_name_the_field(engine_1d, options, param, words):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(engine_1d)
    kw = {"latents": _latents((2, 1, 1, 1)), "output_type": "latent", **options}
    with pytest.raises(InvalidArgumentError) as e:
        rt.sample(**kw)
    assert e.value.param == param and words in str(e.value)


def test_guidance_one_is_accepted(engine_1d):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(engine_1d)
    x = _latents((5, 1, 1, 1))
    a = rt.sample(latents=x, output_type="latent", strong_guidance=1.0, weak_guidance=1)
    assert np.array_equal(a, rt.sample(latents=x, output_type="latent"))


# -- the contract, checked at export ---------------------------------------------------------


def _model(
    inputs: list[tuple[str, int, list]],  # type: ignore[type-arg]
    outputs: list[tuple[str, list]],  # type: ignore[type-arg]
    body: str = "identity",
) -> onnx.ModelProto:
    """A small graph: output(s) = sample (or a reduced sample) + 0 * every other input."""
    ins = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs]
    nodes = []
    if body == "reduce":
        nodes.append(helper.make_node("ReduceMean", ["sample"], [outputs[0][0]], keepdims=1))
    else:
        for n, _ in outputs:
            nodes.append(helper.make_node("Identity", ["sample"], [n]))
    graph = helper.make_graph(nodes, "g", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


F = TensorProto.FLOAT
SAMPLE = ("sample", F, ["B", 1, "H", "W"])
TIMESTEP = ("timestep", F, [1])


@pytest.mark.parametrize(
    "model, words",
    [
        (_model([SAMPLE], [("out", ["B", 1, "H", "W"])]), "no input 'timestep'"),
        (_model([TIMESTEP], [("out", ["B", 1, "H", "W"])]), "no input 'sample'"),
        (
            _model([SAMPLE, ("timestep", TensorProto.INT64, [1])], [("out", ["B", 1, "H", "W"])]),
            "'timestep' must be float32, got int64",
        ),
        (
            _model([SAMPLE, TIMESTEP, ("class_labels", F, ["B"])], [("out", ["B", 1, "H", "W"])]),
            "unexpected input 'class_labels'",
        ),
        (
            _model(
                [SAMPLE, TIMESTEP, ("encoder_hidden_states", F, ["B", 77, 8])],
                [("out", ["B", 1, "H", "W"])],
            ),
            "conditional denoiser",
        ),
        (
            _model([("sample", F, ["B", 1, "H"]), TIMESTEP], [("out", ["B", 1, "H"])]),
            "must be 4-D",
        ),
        (
            _model([("sample", F, [4, 1, "H", "W"]), TIMESTEP], [("out", [4, 1, "H", "W"])]),
            "fixed batch of 4",
        ),
        (
            _model([SAMPLE, ("timestep", F, [2])], [("out", ["B", 1, "H", "W"])]),
            "fixed length 2",
        ),
        (
            _model([SAMPLE, TIMESTEP], [("a", ["B", 1, "H", "W"]), ("b", ["B", 1, "H", "W"])]),
            "exactly one output",
        ),
        (
            _model([SAMPLE, TIMESTEP], [("out", ["B", 1, 1, 1])], body="reduce"),
            "differs from the sample's",
        ),
    ],
)
def test_export_names_what_breaks_the_contract(tmp, model, words):  # type: ignore[no-untyped-def]
    bad = tmp / "bad.onnx"
    onnx.save(model, str(bad))
    good = tmp / "good.onnx"
    onnx.save(onnx_denoiser(STRONG_1D, [0.5] * 1000), str(good))
    sched, _ = _scheduler(tmp)
    out = tmp / "never"
    with pytest.raises(InvalidArgumentError) as e:
        export_onnx_engine(
            OnnxExportOptions(
                strong=good, weak=bad, out=out, scheduler_config=sched, log=lambda m: None
            )
        )
    assert words in str(e.value) and "--weak-onnx" in str(e.value)
    assert not out.exists() and not list(tmp.glob(".never.export-*"))


def test_roles_must_share_the_sample_shape(tmp):  # type: ignore[no-untyped-def]
    a, b = tmp / "c1.onnx", tmp / "c2.onnx"
    onnx.save(onnx_denoiser(STRONG_1D, [0.5] * 1000), str(a))
    onnx.save(onnx_denoiser(STRONG_2D, [0.5] * 1000), str(b))
    sched, _ = _scheduler(tmp)
    with pytest.raises(InvalidArgumentError, match="every role denoises the same latents"):
        export_onnx_engine(
            OnnxExportOptions(
                strong=a, weak=b, out=tmp / "x", scheduler_config=sched, log=lambda m: None
            )
        )


def test_cli_export_build_and_errors(tmp):  # type: ignore[no-untyped-def]
    sched, facts = _scheduler(tmp)
    s = tmp / "cli-s.onnx"
    onnx.save(onnx_denoiser(STRONG_1D, facts["alphas_cumprod"]), str(s))
    out = tmp / "cli-engine"
    onnx_args = ["--strong-onnx", str(s), "--weak-onnx", str(s)]
    ok = _w2sd("export", *onnx_args, "--scheduler-config", str(sched), "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    built = _w2sd("build", str(out), "--backend", "cpu")
    assert built.returncode == 0, built.stderr
    x = _latents((10, 1, 1, 1))
    got = W2SDRuntime(out).sample(latents=x, output_type="latent")
    assert got.shape == x.shape and np.isfinite(got).all()
    missing = _w2sd("export", *onnx_args, "--out", str(tmp / "y"))
    assert missing.returncode == 2 and "needs --scheduler-config" in missing.stderr
    mixed = _w2sd(
        "export",
        "--strong",
        "x",
        *onnx_args,
        "--scheduler-config",
        str(sched),
        "--out",
        str(tmp / "z"),
    )
    assert mixed.returncode == 2 and "not both" in mixed.stderr


def _w2sd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "w2sd_cli", *args], capture_output=True, text=True)


# -- other backends --------------------------------------------------------------------------


def test_cuda_build_converts_a_denoiser_engine(tmp, engine_1d):  # type: ignore[no-untyped-def]
    """The fp16 graph conversion runs anywhere; sampling on it needs a GPU (test_gpu.py)."""
    copy = tmp / "cuda-copy"
    shutil.copytree(engine_1d, copy)
    entry = build_engine(str(copy), "cuda", log=lambda m: None)
    assert set(entry["files"]) == {"unet0", "unet1"}
    model = onnx.load(str(copy / entry["files"]["unet0"]))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [F, F]


@pytest.mark.skipif(openvino_c_library() is None, reason="the openvino wheel is not installed")
def test_openvino_backend_matches_numpy_loop(tmp, engine_2d, sched):  # type: ignore[no-untyped-def]
    """In this process, beside the onnxruntime module and the cpu backend."""
    copy = tmp / "ov-copy"
    shutil.copytree(engine_2d, copy)
    x = _latents((64, 2, 2, 3), seed=7)
    build_engine(str(copy), "openvino", log=lambda m: None)
    rt = W2SDRuntime(copy, backend="openvino")
    got = {
        inversion: rt.sample(
            latents=x, output_type="latent", reflection_steps=5, inversion=inversion
        )
        for inversion in ("official", "exact")
    }
    for inversion in ("official", "exact"):
        ref = numpy_w2sd(sched, STRONG_2D, WEAK_2D, STRONG_2D, x, STEPS, 5, inversion)
        assert_latents_close(got[inversion], ref.astype(np.float32))
