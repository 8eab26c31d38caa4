"""The GPU path's defects that this CPU machine can check (issue 9): the lane pool, the
device buffer layout, the GPU session options, the provider probe, preloading the NVIDIA
libraries, GPU builds in a process of their own, the fp16 graph's float32 regions and
the VAE's precision, TensorRT's per-model profiles and EP-context paths, and requests
beyond a build's batch. What only a GPU can tell is in test_gpu.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from w2sd import InvalidArgumentError, SampleRequest, W2SDRuntime, testing
from w2sd.errors import EngineDirError

# -- lanes: every call checks a lane out of one pool ----------------------------------


def test_lane_pool_hands_each_lane_to_one_caller_at_a_time():  # type: ignore[no-untyped-def]
    pool = testing.LanePool(2)
    assert (pool.acquire(), pool.acquire()) == (0, 1) and pool.in_use == 2
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire()))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and got == []  # both lanes busy: it waits
    pool.release(1)
    waiter.join(timeout=10)
    assert got == [1]
    pool.release(0)
    pool.release(1)
    assert pool.in_use == 0
    with pytest.raises(Exception, match="released but not held"):
        pool.release(1)


def test_lane_pool_serves_waiters_in_order_and_refuses_a_nested_wait():  # type: ignore[no-untyped-def]
    import time

    pool = testing.LanePool(1)
    assert pool.acquire() == 0
    with pytest.raises(InvalidArgumentError, match="would wait forever"):
        pool.acquire()  # this thread holds the only lane: waiting would never end
    order: list[str] = []

    def waiter(name: str) -> None:
        pool.acquire()
        order.append(name)
        time.sleep(0.05)
        pool.release(0)

    a = threading.Thread(target=waiter, args=("a",))
    a.start()
    time.sleep(0.3)  # a is queued before b
    b = threading.Thread(target=waiter, args=("b",))
    b.start()
    time.sleep(0.3)
    pool.release(0)
    a.join(timeout=10)
    b.join(timeout=10)
    assert order == ["a", "b"] and pool.in_use == 0


def _hold_lane(runtime, started: threading.Event, release: threading.Event, out: list):  # type: ignore[no-untyped-def]
    """sample() that stays inside its loop (at its first step) until `release` is set."""

    def callback(done: int, total: int) -> bool:
        started.set()
        release.wait(timeout=60)
        return True

    result = runtime.run(
        SampleRequest(prompt="a cat", seed=1, output_type="latent", callback=callback)
    )
    out.append(result.stats["lane"])


def test_concurrent_sample_calls_run_on_different_lanes(runtime):  # type: ignore[no-untyped-def]
    """Two threads in sample() at once: each has a lane of its own (the old core ran
    every sample() on lane 0: one CUDA stream, one set of sessions)."""
    release = threading.Event()
    lanes: list[int] = []
    started = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=_hold_lane, args=(runtime, started[i], release, lanes))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    try:
        assert all(s.wait(timeout=60) for s in started)
        assert runtime._engine.lanes_in_use == 2
    finally:
        release.set()
        for t in threads:
            t.join(timeout=60)
    assert sorted(lanes) == [0, 1]
    assert runtime._engine.lanes_in_use == 0


def test_sample_many_shares_the_pool_with_sample(runtime):  # type: ignore[no-untyped-def]
    release, started, held = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold_lane, args=(runtime, started, release, held))
    holder.start()
    try:
        assert started.wait(timeout=60)
        reqs = [dict(prompt="a dog", seed=i, output_type="latent") for i in range(3)]
        runtime.sample_many(reqs, lanes=2)
        many_lanes = {s["lane"] for s in runtime.last_many_stats}
    finally:
        release.set()
        holder.join(timeout=60)
    assert held == [0] and 0 not in many_lanes


# -- device buffers: aligned, persistent ------------------------------------------------


def test_workspace_layout_is_aligned_and_disjoint():  # type: ignore[no-untyped-def]
    sizes = [4, 0, 300, 256, 1, 4096 * 4 * 2]
    offsets, total = testing.plan_workspace(sizes)
    align = testing.DEVICE_ALIGNMENT
    assert align == 256 and all(o % align == 0 for o in offsets) and total % align == 0
    spans = sorted((o, o + s) for o, s in zip(offsets, sizes, strict=True) if s)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] <= total


def test_each_timestep_and_lora_scale_has_an_aligned_slot():  # type: ignore[no-untyped-def]
    """The UNet reads the timestep (and the LoRA scale) by pointer: with a packed array,
    step i's pointer was base + 4i bytes; TensorRT needs 256-byte aligned addresses."""
    values = [981.0, 961.0, 941.0, 921.0]
    table = np.asarray(testing.slot_table(values))
    stride = testing.SLOT_FLOATS
    assert stride * 4 == testing.DEVICE_ALIGNMENT
    assert table.size == len(values) * stride
    for i, v in enumerate(values):
        assert table[i * stride] == v and (i * stride * 4) % testing.DEVICE_ALIGNMENT == 0


def test_lane_workspace_grows_rarely():  # type: ignore[no-untyped-def]
    cap = testing.grown_capacity(0, 1000)
    assert cap >= 1000 and cap % 256 == 0
    assert testing.grown_capacity(cap, 1000) == cap  # the same request: no reallocation
    assert testing.grown_capacity(cap, cap) == cap
    bigger = testing.grown_capacity(cap, cap + 1)
    assert bigger >= 1.25 * (cap + 1) - 256  # headroom for the next slightly larger one


# -- GPU session options --------------------------------------------------------------


def test_every_device_unet_call_runs_on_one_batch():  # type: ignore[no-untyped-def]
    """With any role guided, unguided roles are padded to the doubled batch (ONNX Runtime's
    CUDA Conv rebuilds its cuDNN set-up whenever the batch changes); with none guided,
    nothing is doubled."""
    assert testing.doubled_batch([True, False, True]) == [True, True, True]
    assert testing.doubled_batch([False, True, False]) == [True, True, True]
    assert testing.doubled_batch([False, False, False]) == [False, False, False]
    assert testing.doubled_batch([True, True, True]) == [True, True, True]


def test_cuda_options_set_the_device_and_a_heuristic_algorithm_search():  # type: ignore[no-untyped-def]
    opts = dict(testing.gpu_provider_options("cuda", 3, [], []))
    assert opts == {"device_id": "3", "cudnn_conv_algo_search": "HEURISTIC"}
    opts = dict(
        testing.gpu_provider_options("cuda", 0, [("cudnn_conv_algo_search", "DEFAULT")], [])
    )
    assert opts["cudnn_conv_algo_search"] == "DEFAULT"  # the build's options win
    assert testing.GPU_INTRA_OP_THREADS == 1


def test_the_device_and_stream_are_the_runtimes_own():  # type: ignore[no-untyped-def]
    """A build's or caller's options cannot move a session off the backend's device or
    stream (its lanes' streams and buffers live on that device)."""
    user = [("device_id", "0"), ("user_compute_stream", "12345"), ("gpu_mem_limit", "1")]
    cuda = dict(testing.gpu_provider_options("cuda", 2, user, []))
    assert cuda["device_id"] == "2" and "user_compute_stream" not in cuda
    assert cuda["gpu_mem_limit"] == "1"
    trt = dict(testing.gpu_provider_options("tensorrt", 2, user, [("device_id", "1")]))
    assert trt["device_id"] == "2" and "user_compute_stream" not in trt


def test_each_unet_input_shape_gets_its_own_cuda_graph():  # type: ignore[no-untyped-def]
    """One session's plan: a call with shapes seen before replays their graph; new shapes
    get the next id while fewer than the maximum exist; beyond it calls are launched (-1)."""
    guided = [[2, 4, 8, 8], [1], [2, 77, 768]]
    unguided = [[1, 4, 8, 8], [1], [1, 77, 768]]
    bigger = [[2, 4, 16, 16], [1], [2, 77, 768]]
    calls = [guided, unguided, guided, guided, bigger, unguided]
    assert testing.cuda_graph_ids(4, calls) == [0, 1, 0, 0, 2, 1]
    assert testing.cuda_graph_ids(2, calls) == [0, 1, 0, 0, -1, 1]
    assert testing.cuda_graph_ids(0, calls[:2]) == [-1, -1]
    # Another rank or another text length is another graph.
    assert testing.cuda_graph_ids(4, [guided, [*guided[:2], [2, 78, 768]]]) == [0, 1]
    assert testing.MAX_CUDA_GRAPHS_PER_SESSION == 4


def test_a_graphed_call_copies_its_inputs_into_fixed_slots():  # type: ignore[no-untyped-def]
    """Each input is copied into its graph slot before the replay (an input already there
    is not), the output slot back after; byte counts are the float32 tensors'."""
    inputs = [(0x1000, [2, 4, 8, 8]), (0x2000, [1]), (0x3000, [2, 77, 768])]
    slots = [0xA000, 0x2000, 0xC000]
    before, after = testing.cuda_graph_slot_copies(inputs, slots, (0x4000, [2, 4, 8, 8]), 0xD000)
    assert before == [(0xA000, 0x1000, 2 * 4 * 8 * 8 * 4), (0xC000, 0x3000, 2 * 77 * 768 * 4)]
    assert after == (0x4000, 0xD000, 2 * 4 * 8 * 8 * 4)
    with pytest.raises(InvalidArgumentError, match="3 UNet inputs but 2 graph slots"):
        testing.cuda_graph_slot_copies(inputs, slots[:2], (0x4000, [2, 4, 8, 8]), 0xD000)
    with pytest.raises(InvalidArgumentError, match="not allocated"):
        testing.cuda_graph_slot_copies(inputs, [0, *slots[1:]], (0x4000, [1]), 0xD000)


def test_cuda_graphs_follow_the_build_and_the_callers_choice(engine_dir, monkeypatch):  # type: ignore[no-untyped-def]
    """A cuda build that records cuda_graphs has its UNet sessions ask ONNX Runtime for
    them (enable_cuda_graph=1); W2SDRuntime(cuda_graphs=False) and older builds do not; the
    option is refused for other backends."""
    from w2sd import backend_options
    from w2sd.backend_options import LoadChoices
    from w2sd.manifest import load_manifest

    m = load_manifest(engine_dir)
    built = m.spec.backends["cpu"]  # stands in for a cuda build: only its facts are read

    def unet_options(choices: LoadChoices) -> dict[str, str]:
        return backend_options.load_options("cuda", m, built, choices).model_provider_options[
            "unet"
        ]

    monkeypatch.setitem(built.model_extra, "cuda_graphs", True)
    assert unet_options(LoadChoices())["enable_cuda_graph"] == "1"
    assert unet_options(LoadChoices(cuda_graphs=False))["enable_cuda_graph"] == "0"
    assert testing.wants_cuda_graph(list(unet_options(LoadChoices()).items()))
    assert not testing.wants_cuda_graph(list(unet_options(LoadChoices(cuda_graphs=False)).items()))
    monkeypatch.delitem(built.model_extra, "cuda_graphs")
    assert unet_options(LoadChoices())["enable_cuda_graph"] == "0"
    assert unet_options(LoadChoices(cuda_graphs=True))["enable_cuda_graph"] == "1"
    for backend in ("cpu", "tensorrt"):
        with pytest.raises(InvalidArgumentError, match="CUDA graphs are for backend 'cuda'"):
            backend_options.load_options(backend, m, built, LoadChoices(cuda_graphs=True))
    with pytest.raises(InvalidArgumentError, match="cuda_graphs must be True, False or None"):
        W2SDRuntime(engine_dir, cuda_graphs="yes")  # type: ignore[arg-type]
    # The last setting wins, as in ONNX Runtime.
    assert not testing.wants_cuda_graph([("enable_cuda_graph", "1"), ("enable_cuda_graph", "0")])


def test_tensorrt_options_are_per_model():  # type: ignore[no-untyped-def]
    common = [("trt_fp16_enable", "1")]
    vae = [("trt_fp16_enable", "0"), ("trt_profile_min_shapes", "latent_sample:1x4x8x8")]
    opts = testing.gpu_provider_options("tensorrt", 1, common, vae)
    assert opts == [
        ("device_id", "1"),
        ("trt_fp16_enable", "0"),
        ("trt_profile_min_shapes", "latent_sample:1x4x8x8"),
    ]


def test_gpu_provider_probe_reports_why_it_cannot_load():  # type: ignore[no-untyped-def]
    """Availability is decided by appending the provider (which loads its library), not by
    the list the library was built with. Here (CPU wheel) the reason comes back."""
    from w2sd.backends import _load_library

    assert _load_library() is None
    for provider, name in (("cuda", "CUDA"), ("tensorrt", "TensorRT")):
        why = testing.probe_gpu_provider(provider)
        assert why and f"{name} execution provider" in why
    assert "provider must be 'cuda' or 'tensorrt'" in testing.probe_gpu_provider("cpu")


# -- NVIDIA libraries preloaded from the pip packages --------------------------------


def _fake_so(path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C compiler to make a shared library")
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text("int w2sd_fake_symbol(void) { return 1; }\n")
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-Wl,-soname,{path.name}", "-o", str(path), str(src)],
        check=True,
    )


def _fake_gpu_wheel(root: Path, cuda: str) -> Path:
    capi = root / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi / "libonnxruntime.so.1.99.0").write_bytes(b"")
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    (capi / "build_and_package_info.py").write_text(
        f'package_name = "onnxruntime-gpu"\ncuda_version = "{cuda}"\n'
    )
    return capi / "libonnxruntime.so.1.99.0"


@pytest.mark.parametrize(
    ("cuda", "layout"),
    [("12.8", ("cublas", "cudnn")), ("13.0", ("cu13", "cudnn"))],
)
def test_nvidia_libraries_from_pip_packages_are_loaded_by_path(tmp_path, cuda, layout):  # type: ignore[no-untyped-def]
    from w2sd.gpu_libraries import nvidia_library_paths

    major = int(cuda.split(".")[0])
    site = tmp_path / "site"
    rels = nvidia_library_paths(major)
    assert [r[-1] for r in rels[:2]] == [f"libcublasLt.so.{major}", f"libcublas.so.{major}"]
    wanted = [r for r in rels if r[1] in layout and "cublasLt" not in r[-1]]
    for rel in wanted:
        _fake_so(site.joinpath(*rel))
    _fake_so(site / "tensorrt_libs" / "libnvinfer.so.10")
    library = _fake_gpu_wheel(tmp_path / "wheel", cuda)
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from w2sd.gpu_libraries import preload_gpu_libraries
        r = preload_gpu_libraries(Path({str(library)!r}), site_dirs=[Path({str(site)!r})])
        maps = Path("/proc/self/maps").read_text()
        print(json.dumps({{"loaded": r.loaded, "not_found": r.not_found, "failed": r.failed,
                          "mapped": [p for p in r.loaded if p in maps], "major": r.cuda_major}}))
        """
    )
    out = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    )
    expected = [str(site.joinpath(*rel)) for rel in wanted]
    expected.append(str(site / "tensorrt_libs" / "libnvinfer.so.10"))
    assert out["major"] == major and out["failed"] == []
    assert out["loaded"] == [p for p in expected if p in out["loaded"]]  # in load order
    assert set(out["loaded"]) == set(expected) and out["mapped"] == out["loaded"]
    assert f"libcublasLt.so.{major}" in out["not_found"]  # not made here: reported


def test_a_provider_that_does_not_load_says_which_library_is_missing(tmp_path):  # type: ignore[no-untyped-def]
    """ONNX Runtime reports only "Failed to load shared library"; the reason names the
    dependency the dynamic loader could not find."""
    from w2sd.gpu_libraries import provider_load_error

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to make a shared library")
    library = _fake_gpu_wheel(tmp_path / "wheel", "12.8")
    dep = tmp_path / "dep" / "libcudnn.so.9"
    _fake_so(dep)
    src = tmp_path / "provider.c"
    src.write_text("int w2sd_fake_symbol(void); int f(void) { return w2sd_fake_symbol(); }\n")
    provider = library.parent / "libonnxruntime_providers_cuda.so"
    provider.unlink()
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(provider), str(src), str(dep)], check=True
    )
    dep.unlink()  # as on a machine without cuDNN
    why = provider_load_error(library, "cuda")
    assert why is not None and "libcudnn.so.9" in why
    assert "not in" in (provider_load_error(library, "tensorrt") or "")


def test_cpu_builds_preload_nothing(tmp_path):  # type: ignore[no-untyped-def]
    from w2sd.gpu_libraries import preload_gpu_libraries
    from w2sd.ort_library import find_ort_library

    report = preload_gpu_libraries(find_ort_library(), site_dirs=[tmp_path])
    assert not report.gpu_build and report.loaded == [] and report.not_found == []


# -- GPU builds in a process of their own --------------------------------------------


def test_gpu_builds_never_load_onnxruntime_into_the_calling_process(engine_copy):  # type: ignore[no-untyped-def]
    """The cuda build uses ONNX Runtime's Python module (the fp16 converter), a second copy
    of ONNX Runtime beside the core's: it runs in a child process."""
    script = textwrap.dedent(
        f"""
        import sys
        from engines.build import build_engine
        lines = []
        entry = build_engine({str(engine_copy)!r}, "cuda", log=lines.append)
        assert "onnxruntime" not in sys.modules, "the build imported onnxruntime here"
        assert any("fp16" in line for line in lines), lines
        print(entry["model_precision"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((engine_copy / "manifest.json").read_text())
    assert manifest["backends"]["cuda"]["model_precision"]["unet0"] == "fp16"


def test_gpu_build_errors_keep_their_class(engine_copy):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from engines.build import build_engine
    from w2sd import BackendError

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT EP present")
    with pytest.raises(BackendError, match="TensorRT execution provider"):
        build_engine(str(engine_copy), "tensorrt", log=lambda m: None)
    with pytest.raises(InvalidArgumentError, match="--max-batch applies to --backend tensorrt"):
        build_engine(str(engine_copy), "cuda", max_batch=2)


# -- fp16: the float32 regions survive ------------------------------------------------


def _value_types(model) -> dict[str, int]:  # type: ignore[no-untyped-def]
    # ONNX Runtime's shape inference: it knows the fused (com.microsoft) operators.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _cuda_build(engine: Path) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, "-m", "w2sd_cli", "build", str(engine), "--backend", "cuda"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((engine / "manifest.json").read_text())["backends"]["cuda"]


def test_fp16_unet_is_fused_and_keeps_timestep_embedding_in_fp32(engine_copy):  # type: ignore[no-untyped-def]
    """The CUDA build's UNet: ONNX Runtime's fused attention (whose kernels accumulate the
    scores in float32, so no Softmax island is left) and the timestep embedding in float32."""
    import onnx

    entry = _cuda_build(engine_copy)
    model = onnx.load(str(engine_copy / entry["files"]["unet0"]))
    types = _value_types(model)
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert not [n for n in model.graph.node if n.op_type == "Softmax"]
    attention = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    assert len(attention) == entry["fused_ops"]["unet0"]["source_attentions"] > 0
    sincos = [n for n in model.graph.node if n.op_type in ("Sin", "Cos")]
    assert sincos
    for node in sincos:
        assert types[node.input[0]] == f32 and types[node.output[0]] == f32, node.name
    weights = [t for t in model.graph.initializer if len(t.dims) > 1]
    assert weights and all(t.data_type == f16 for t in weights)
    assert entry["fp32_nodes"]["unet0"] >= len(sincos)
    assert entry["cuda_graphs"] is True
    assert entry["model_precision"] == {
        "unet0": "fp16",
        "unet1": "fp16",
        "text_encoder0": "fp16",
        "vae_decoder": "fp16",  # SD 1.x: diffusers decodes it in fp16
    }


def test_fp16_conversion_infers_types_before_loading_weights(engine_copy, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Past 2 GB (any real UNet) the converter cannot infer types itself, and without them
    it left the timestep embedding's fp32 Mul reading an fp16 tensor: ONNX Runtime refused
    the SD 1.5 UNet ("bound to different types", seen on an H100). Types are inferred on
    the weightless proto, whatever the size, and the result must load."""
    import onnx
    import onnxruntime as ort

    from engines.fp16 import convert_fp16

    infer = onnx.shape_inference.infer_shapes
    loaded_at_inference: list[int] = []

    def spy(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        loaded_at_inference.append(sum(len(t.raw_data) for t in model.graph.initializer))
        return infer(model, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy)
    src = engine_copy / "unet0" / "model.onnx"
    dst = tmp_path / "fp16" / "model.onnx"
    convert_fp16(src, dst)
    weights = sum(t.ByteSize() for t in onnx.load(str(src)).graph.initializer)
    assert loaded_at_inference and max(loaded_at_inference) < weights / 10
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])  # type-checks


def test_sdxl_vae_stays_fp32_when_the_pipeline_says_force_upcast(zoo, tmp_path):  # type: ignore[no-untyped-def]
    import onnx

    from engines.fp16 import vae_keeps_fp32

    base = zoo.pipeline("sdxl", 1)
    source = zoo.engine("sdxl-condition", strong=base, weak=base, weak_guidance=1.0)
    engine = tmp_path / "sdxl"
    shutil.copytree(source, engine)
    m = json.loads((engine / "manifest.json").read_text())
    assert m["models"]["vae_decoder"]["force_upcast"] is True
    entry = _cuda_build(engine)
    assert entry["model_precision"]["vae_decoder"] == "fp32"
    vae = onnx.load(str(engine / entry["files"]["vae_decoder"]))
    assert {t.data_type for t in vae.graph.initializer if len(t.dims) > 1} == {
        onnx.TensorProto.FLOAT
    }
    types = _value_types(onnx.load(str(engine / entry["files"]["unet0"])))
    unet = onnx.load(str(engine / entry["files"]["unet0"]), load_external_data=False)
    time_ids = [n for n in unet.graph.node if n.op_type in ("Sin", "Cos")]
    assert len(time_ids) >= 4  # time_proj and add_time_proj (SDXL's time ids)
    assert all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in time_ids)
    assert vae_keeps_fp32("sdxl", None) and not vae_keeps_fp32("sdxl", False)
    assert not vae_keeps_fp32("sd", True)


# -- TensorRT: per-model profiles, context paths -------------------------------------


def _profile_inputs(profile: str) -> set[str]:
    return {item.split(":")[0] for item in profile.split(",")}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_tensorrt_profiles_name_each_models_own_inputs(zoo, family):  # type: ignore[no-untyped-def]
    """The UNet's profile given to the text encoder and VAE made TensorRT build their
    engines lazily (or fail); each model now has a profile over its own inputs."""
    import onnx

    from engines.common import model_kind, model_sources
    from engines.tensorrt import model_options
    from w2sd.manifest import load_manifest

    base = zoo.pipeline(family, 1)
    engine = zoo.engine(f"{family}-condition", strong=base, weak=base, weak_guidance=1.0)
    m = load_manifest(engine)
    per_kind = model_options(m, max_batch=3)
    for name, rel in model_sources(m).items():
        opts = per_kind[model_kind(name)]
        model = onnx.load(str(m.path(rel)), load_external_data=False)
        inputs = {i.name for i in model.graph.input}
        for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
            assert _profile_inputs(opts[key]) == inputs, (name, key)
    unet_max = per_kind["unet"]["trt_profile_max_shapes"]
    assert unet_max.startswith("sample:6x")  # guided: 2 x max_batch
    assert per_kind["text_encoder"]["trt_profile_max_shapes"] == "input_ids:18x77"
    assert per_kind["vae_decoder"]["trt_fp16_enable"] == ("0" if family == "sdxl" else "1")


def _ctx_model(path: Path, cache_context: str, embed_mode: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(
        "EPContext",
        ["sample"],
        ["out_sample"],
        domain="com.microsoft",
        embed_mode=embed_mode,
        ep_cache_context=cache_context,
        name="ctx",
    )
    graph = helper.make_graph(
        [node],
        "ctx",
        [helper.make_tensor_value_info("sample", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out_sample", TensorProto.FLOAT, [1])],
    )
    onnx.save_model(helper.make_model(graph), str(path))


def test_context_models_name_their_engines_relative_to_themselves(tmp_path):  # type: ignore[no-untyped-def]
    import onnx

    from engines.tensorrt import check_context_model

    root = tmp_path / "engine"
    trt = root / "tensorrt"
    (trt / "cache").mkdir(parents=True)
    (trt / "cache" / "unet.engine").write_bytes(b"x")
    ctx = trt / "unet0_ctx.onnx"
    _ctx_model(ctx, str(trt / "cache" / "unet.engine"))  # absolute, as a build may write it
    assert check_context_model(ctx, root) == ["tensorrt/cache/unet.engine"]
    node = onnx.load(str(ctx)).graph.node[0]
    value = onnx.helper.get_attribute_value(
        next(a for a in node.attribute if a.name == "ep_cache_context")
    )
    assert value == b"cache/unet.engine"
    assert check_context_model(ctx, root) == ["tensorrt/cache/unet.engine"]  # idempotent
    _ctx_model(ctx, "x", embed_mode=1)  # the engine inside the model: nothing to resolve
    assert check_context_model(ctx, root) == []


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("/elsewhere/unet.engine", "outside"),
        ("../../unet.engine", "leaves"),
        ("cache/missing.engine", "does not exist"),
    ],
)
def test_context_models_that_could_not_load_are_refused(tmp_path, context, message):  # type: ignore[no-untyped-def]
    from engines.tensorrt import check_context_model

    (tmp_path / "tensorrt").mkdir()
    ctx = tmp_path / "tensorrt" / "unet0_ctx.onnx"
    _ctx_model(ctx, context)
    with pytest.raises(EngineDirError, match=message):
        check_context_model(ctx, tmp_path)


# -- requests beyond a build's batch --------------------------------------------------


def test_requests_beyond_the_builds_batch_are_refused_before_the_loop(engine_copy):  # type: ignore[no-untyped-def]
    path = engine_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["backends"]["cpu"]["max_batch"] = 1
    path.write_text(json.dumps(m))
    rt = W2SDRuntime(engine_copy)
    rt.sample("a cat", seed=0, output_type="latent")  # one image: fine
    with pytest.raises(InvalidArgumentError, match="takes at most 1") as e:
        rt.sample(["a cat", "a dog"], seed=0, output_type="latent")
    assert e.value.param == "prompt"
