"""``SampleRequest``: one typed request for the API, ``sample_many`` and the CLI, validated
once, with errors that name the field; and the core's conditioning checks, shared by
every loop strategy."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from w2sd import InvalidArgumentError, SampleRequest, W2SDRuntime
from w2sd.latents import initial_latents


def test_request_is_frozen_and_normalised():  # type: ignore[no-untyped-def]
    req = SampleRequest(prompt=["a", "b"], reflection_steps=[0, 2], strong_guidance=np.float32(5))
    assert req.prompt == ("a", "b") and req.reflection_steps == (0, 2)
    assert type(req.strong_guidance) is float and req.strong_guidance == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(prompt=3), "prompt"),
        (dict(prompt=["a", "b"], negative_prompt=["c"]), "negative_prompt"),
        (dict(prompt="a", weak_prompt=[]), "weak_prompt"),
        (dict(num_inference_steps=True), "num_inference_steps"),
        (dict(reflection_steps=[1, "2"]), "reflection_steps"),
        (dict(weak_guidance=float("inf")), "weak_guidance"),
        (dict(inversion="textbook"), "inversion"),
        (dict(seed=-2), "seed"),
        (dict(height=64.0), "height"),
        (dict(latents=np.zeros((1, 4, 8, 8), np.float64)), "latents"),
        (dict(output_type="tensor"), "output_type"),
        (dict(callback=3), "callback"),
    ],
)
def test_engine_independent_checks_name_the_field(kwargs, param):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError) as e:
        SampleRequest(**kwargs)
    assert e.value.param == param


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(num_inference_steps=5000), "num_inference_steps"),
        (dict(num_inference_steps=10, reflection_steps=10), "reflection_steps"),
        (dict(num_inference_steps=10, reflection_steps=[3, 3]), "reflection_steps"),
        (dict(height=4096), "height"),
        (dict(latents=np.zeros((2, 4, 8, 8), np.float32)), "latents"),
        (dict(stepz=3), "stepz"),
    ],
)
def test_engine_checks_name_the_field(runtime, kwargs, param):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError) as e:
        runtime.sample("a cat", **kwargs)
    assert e.value.param == param


def test_request_object_and_keywords_are_one_route(runtime):  # type: ignore[no-untyped-def]
    x = initial_latents(3, (1, 4, 8, 8))
    kw = dict(num_inference_steps=6, reflection_steps=[0, 3], latents=x, output_type="latent")
    by_keywords = runtime.sample("a red bicycle", **kw)
    by_request = runtime.sample(SampleRequest(prompt="a red bicycle", **kw))
    many = runtime.sample_many([SampleRequest(prompt="a red bicycle", **kw)])
    np.testing.assert_array_equal(by_keywords, by_request)
    np.testing.assert_array_equal(by_keywords, many[0])
    assert runtime.last_stats["unet_calls"] == 6 + 2 * 2
    with pytest.raises(InvalidArgumentError, match="either a SampleRequest or keyword"):
        runtime.sample(SampleRequest(prompt="a"), seed=3)


def test_every_cli_flag_comes_from_the_request():  # type: ignore[no-untyped-def]
    """`w2sd sample --help` lists every flag the request declares, with its help."""
    out = subprocess.run(
        [sys.executable, "-m", "w2sd_cli", "sample", "--help"], capture_output=True, text=True
    ).stdout
    flagged = [f for f in dataclasses.fields(SampleRequest) if f.metadata.get("flag")]
    assert len(flagged) >= 15
    for f in flagged:
        assert f.metadata["flag"] in out, f.name


def test_missing_pooled_embeddings_are_refused_by_the_core(zoo):  # type: ignore[no-untyped-def]
    """check_conditioning runs in Engine::run_loop for every loop strategy (host and
    device): an SDXL request without pooled embeddings is an error, not a null read."""
    from engines.build import build_engine
    from export.engine_export import ExportOptions, export_engine

    base = zoo.pipeline("sdxl", 1)
    out = zoo.root / "engines" / "sdxl-pooled-check"
    export_engine(ExportOptions(strong=base, weak=base, out=out, verify=False, log=lambda m: None))
    build_engine(str(out), "cpu", log=lambda m: None)
    rt = W2SDRuntime(out)
    plan = SampleRequest(prompt="a cat", seed=1, num_inference_steps=4, reflection_steps=1)
    prepared = rt._prepare(plan)
    for role in prepared.roles:
        role.cond_pooled = None
    with pytest.raises(InvalidArgumentError, match="needs pooled text embeddings and time ids"):
        rt._engine.run_loop(prepared.core_request())
