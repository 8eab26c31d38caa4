"""`w2sd bench` runs on the tiny workload and writes valid JSON (a benchmark is not a test:
nothing here asserts a speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import PEER_GUIDANCE, runtime_peer_latents
from w2sd.latents import initial_latents
from w2sd.spec_bounds import FP32_IMAGE_EQUAL_FRACTION, FP32_LATENT_RTOL

REQUIRED = {
    "workload",
    "backend",
    "num_inference_steps",
    "reflection_steps",
    "unet_calls",
    "e2e_s",
    "stages_s",
    "unet_call_s",
    "loop_overhead_s",
    "peak_rss_bytes",
    "load_s",
    "checksum_s",
    "first_request_s",
    "first_request_ratio",
    "machine",
    "baselines",
    "roofline",
}


def test_bench_tiny_writes_json_and_chart(tmp_path):  # type: ignore[no-untyped-def]
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2sd_cli",
            "bench",
            "--workload",
            "tiny",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "2",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(out),
            "--chart",
            str(png),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert set(r) >= REQUIRED
    assert r["workload"] == "tiny" and r["unet_calls"] == 10 + 2 * 5
    assert set(r["e2e_s"]) == {"median", "min", "max"}
    assert set(r["stages_s"]) == {"text_encode", "loop", "vae_decode"}
    from w2sd.cpuinfo import bf16_support

    fast_bf16, why = bf16_support()
    if fast_bf16:
        assert set(r["baselines"]) == {"diffusers", "diffusers-bf16", "ort-python", "ddim"}
        assert set(r["baselines_absent"]) == {"ov-python"}
    else:  # emulated bf16 would take ~40x fp32: left out by default, with the reason
        assert set(r["baselines"]) == {"diffusers", "ort-python", "ddim"}
        assert r["baselines_absent"]["diffusers-bf16"] == why
        assert "diffusers-bf16 not run: " in proc.stdout
    assert r["precision"] == "fp32" and r["interleaved_rounds"] == 1
    # The runtime's output against the fp32 reference's, same latents: in fp32, the spec's
    # fp32 bounds hold.
    pc = r["precision_check"]
    assert pc["against"] == "diffusers (fp32)"
    assert pc["latents_max_rel_diff"] <= FP32_LATENT_RTOL
    assert pc["image_equal_fraction"] >= FP32_IMAGE_EQUAL_FRACTION
    assert pc["image_psnr_db"] > 40
    assert "image PSNR" in proc.stdout
    assert isinstance(r["machine"]["isa_flags"], list) and r["machine"]["cpu"]
    assert r["baselines"]["ddim"]["unet_calls"] == 20
    assert set(r["roofline"]) >= {"unet_gflop", "achieved_gflops", "peak_gflops", "fraction"}
    assert r["roofline"]["fp32_peak_gflops"] == r["roofline"]["peak_gflops"]
    assert r["roofline"]["bf16_peak_gflops"] is None  # measured only when bf16 is in use
    # Every one of the tiny workload's 20 calls runs the guided batch of 2 (all guidance 7.5).
    assert r["roofline"]["loop_gflop"] == pytest.approx(
        r["unet_calls"] * r["roofline"]["unet_gflop"]
    )
    assert r["throughput"]["concurrency"] == 2
    assert 0 < r["checksum_s"] < r["load_s"]  # the load includes the checks it ran
    assert "engine load " in proc.stdout
    # The first request after the load (here the one timed run: no warm-up), beside the
    # steady median; how it is timed apart is tested below.
    assert r["first_request_s"] == pytest.approx(r["e2e_s"]["median"])
    assert r["first_request_ratio"] == pytest.approx(1.0)
    assert "first request after load" in proc.stdout
    assert png.stat().st_size > 0 and "w2sd runtime" in proc.stdout


@pytest.mark.parametrize("warmup,first", [(1, 5.0), (0, 1.0)])
def test_the_first_request_is_timed_apart_from_the_steady_ones(monkeypatch, warmup, first):  # type: ignore[no-untyped-def]
    """The first call after the load (a warm-up's, else the first timed one) is kept on
    its own; the steady times are the timed calls after the warm-up."""
    from types import SimpleNamespace

    from w2sd_bench import worker

    clock = [0.0]
    durations = iter([5.0, 1.0, 2.0, 3.0][1 - warmup :])
    monkeypatch.setattr(worker, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def run() -> float:
        clock[0] += next(durations)
        return clock[0]

    got: list[float] = []
    times, results = worker._measure({"warmup": warmup, "repeat": 3}, run, got)
    assert got == [first]
    assert times == [1.0, 2.0, 3.0] and len(results) == 3


def test_default_baselines_follow_the_cpu(monkeypatch):  # type: ignore[no-untyped-def]
    from w2sd.cpuinfo import bf16_support
    from w2sd_bench import runner

    everything = ("diffusers", "diffusers-bf16", "ort-python", "ov-python", "ddim")
    monkeypatch.setattr(runner, "bf16_support", lambda: bf16_support({"avx2", "amx_bf16"}))
    assert runner.default_baselines("openvino") == (everything, {})
    chosen, absent = runner.default_baselines("cpu")
    assert chosen == ("diffusers", "diffusers-bf16", "ort-python", "ddim")
    assert set(absent) == {"ov-python"}
    monkeypatch.setattr(runner, "bf16_support", lambda: bf16_support({"avx2"}))
    chosen, absent = runner.default_baselines("openvino")
    assert chosen == ("diffusers", "ort-python", "ov-python", "ddim")
    assert "none of amx_bf16, avx512_bf16" in absent["diffusers-bf16"]
    # On a GPU: diffusers' own fp16 pipelines are the peers; the reference loop the oracle.
    gpu = ("diffusers", "diffusers-pipeline", "diffusers-compile", "ort-python", "ddim")
    assert runner.default_baselines("cuda") == (gpu, {})


def test_static_shapes_peer_is_the_runtime_with_static_unet_models(engine_dir):  # type: ignore[no-untyped-def]
    """By name only, for backend openvino: the runtime itself, loading its UNets as
    static-shape models (the default request's shapes), so the choice can be measured."""
    from w2sd.manifest import load_manifest
    from w2sd_bench import runner

    assert "static-shapes" not in runner.default_baselines("openvino")[0]
    m = load_manifest(engine_dir)
    base = {"steps": 10, "reflection": 5, "backend": "openvino"}
    absent: dict[str, str] = {}
    systems = runner._systems(base, ("static-shapes",), m, absent, lambda msg: None)
    assert systems["static-shapes"] == {**base, "kind": "runtime", "unet_shape_sessions": 2}
    assert systems["runtime"] == {**base, "kind": "runtime"} and not absent
    systems = runner._systems({**base, "backend": "cpu"}, ("static-shapes",), m, absent, print)
    assert set(systems) == {"runtime"} and "backend 'openvino'" in absent["static-shapes"]


def test_warm_up_peer_times_the_first_request_after_warm_up(engine_dir):  # type: ignore[no-untyped-def]
    """By name only, on any backend: the runtime warmed up after loading (as `w2sd serve`
    does); its worker records the warm-up's seconds beside the first request's."""
    from w2sd.manifest import load_manifest
    from w2sd_bench import runner, worker

    assert "warm-up" not in runner.default_baselines("cpu")[0]
    base = {"steps": 4, "reflection": 2, "backend": "cpu"}
    systems = runner._systems(base, ("warm-up",), load_manifest(engine_dir), {}, print)
    assert systems["warm-up"] == {**base, "kind": "runtime", "warm_up": True}
    cfg = {
        **base,
        "engine": str(engine_dir),
        "prompt": "a cat",
        "seed": 1,
        "latent_shape": [1, 4, 8, 8],
        "guidance": {"strong": 7.5, "weak": 5.0, "denoiser": 1.0},
        "warmup": 0,
        "repeat": 2,
    }
    warmed, cold = worker.run_runtime({**cfg, "warm_up": True}), worker.run_runtime(cfg)
    assert warmed["warm_up_s"] > 0 and "warm_up_s" not in cold
    assert warmed["first_request_s"] > 0 and warmed["first_request_ratio"] > 0


def test_ort_python_baseline_does_the_same_work(engine_dir, runtime):  # type: ignore[no-untyped-def]
    """The baseline must compute what the runtime computes, or the ratio means nothing."""
    from w2sd_bench.ort_python import OrtPythonW2SD

    x = initial_latents(2, (1, 4, 8, 8))
    got = OrtPythonW2SD(engine_dir).sample("a cat", x, 10, 5, PEER_GUIDANCE)["latents"]
    ours = runtime_peer_latents(runtime, x)
    assert np.abs(got - ours).max() <= FP32_LATENT_RTOL * np.abs(ours).max()


def test_roofline_counts_a_known_graph(tmp_path):  # type: ignore[no-untyped-def]
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from w2sd_bench.roofline import unet_macs

    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    m = numpy_helper.from_array(np.zeros((8, 5), np.float32), "m")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
            helper.make_node("MatMul", ["y", "m"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=[w, m],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    conv = 2 * 8 * 4 * 8 * (3 * 3 * 3)  # out elements x (Cin x kh x kw)
    matmul = 2 * 8 * 4 * 5 * 8  # out elements (2, 8, 4, 5) x K=8
    assert unet_macs(path, {"x": [2, 3, 4, 8]}) == conv + matmul


def test_fullpath_measures_every_step_on_tiny(tmp_path):  # type: ignore[no-untyped-def]
    """The SDXL-size measurement tool, on the tiny workload: every step in its own process,
    one UNet artifact for the LoRA gap, peaks measured, the engine dir removed after."""
    from w2sd_bench.fullpath import run

    r = run("tiny", "lora", [64], tmp_path, log=lambda m: None)
    assert r["export"]["unet_artifacts"] == 1 and r["export"]["peak_rss_bytes"] > 0
    assert r["build"]["cpu_bytes"] > 0
    s = r["samples"]["64"]
    assert s["unet_sessions"] == 1 and s["stats"]["unet_calls"] == 4
    # The process holds its weights and more: the ratio is peak over weights, not inverted.
    assert s["peak_rss_bytes"] > s["weights_bytes"] and s["peak_over_weights"] > 1
    assert not (tmp_path / "tiny" / "engine-lora-input").exists()


def test_memory_arena_off_gives_the_same_result(engine_dir, runtime):  # type: ignore[no-untyped-def]
    from w2sd import W2SDRuntime

    x = initial_latents(5, (1, 4, 8, 8))
    kw = dict(latents=x, num_inference_steps=6, reflection_steps=2, output_type="latent")
    lean = W2SDRuntime(engine_dir, memory_arena=False)
    assert np.array_equal(lean.sample("a cat", **kw), runtime.sample("a cat", **kw))


def _fake_worker(times: dict[str, list[float]]):  # type: ignore[no-untyped-def]
    """A benchmark worker whose end-to-end times are known: each system's rounds in order."""
    rounds = {k: iter(v) for k, v in times.items()}

    def worker(cfg):  # type: ignore[no-untyped-def]
        if cfg["kind"] == "peak":
            return {"peak_gflops": 1.0, "bf16_peak_gflops": None, "matmul_n": 8}
        system = "ddim" if cfg["reflection"] == 0 else "runtime"
        t = next(rounds[system])
        stages = {"text_encode": 0.0, "loop": t, "vae_decode": 0.0}
        calls = cfg["steps"] + 2 * cfg["reflection"]
        return {
            "e2e_s": {"median": t, "min": t, "max": t},
            "stages_s": stages,
            "peak_rss_bytes": 1,
            "weights_bytes": 1,
            "unet_calls": calls,
            "unet_call_s": t / calls,
            "loop_overhead_s": 0.0,
            "load_s": 0.1,
            "checksum_s": 0.01,
            "first_request_s": t,
            "first_request_ratio": 1.0,
        }

    return worker


@pytest.mark.parametrize(
    "runtime,ddim,speedup",
    [
        ([1.0, 9.0, 1.0], [3.0, 3.0, 3.0], 3.0),  # faster: the median ignores one slow round
        ([2.0, 2.0, 2.0], [1.0, 0.5, 1.0], 0.5),  # slower than the baseline
    ],
)
def test_speedup_is_how_many_times_faster_the_runtime_is(
    engine_dir, monkeypatch, runtime, ddim, speedup
):  # type: ignore[no-untyped-def]
    from w2sd_bench import report, runner

    monkeypatch.setattr(runner, "_worker", _fake_worker({"runtime": runtime, "ddim": ddim}))
    opts = runner.BenchOptions(
        engine_dir=engine_dir,
        baselines=("ddim",),
        repeat=3,
        warmup=0,
        concurrency=1,
        log=lambda m: None,
    )
    r = runner.run_bench(opts)
    assert r["e2e_s"] == {"median": sorted(runtime)[1], "min": min(runtime), "max": max(runtime)}
    assert r["baselines"]["ddim"]["speedup"] == speedup
    ddim_row = next(line for line in report.table(r).splitlines() if line.startswith("ddim"))
    assert ddim_row.endswith(f"{speedup:.2f}x")
