"""Dynamic batching is derived from SampleRequest itself: a field that changes the result
keeps requests apart and reaches the merged request, including a field added later."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from w2sd.native import ddim_schedule
from w2sd.request import SampleRequest
from w2sd_serve.batching import BatchJob, merge_key, merged_request


@dataclass(frozen=True)
class RequestWithNewField(SampleRequest):
    """SampleRequest as it would be with one more field that changes the image."""

    eta: float = 0.0


def _job(runtime, request: SampleRequest) -> BatchJob:  # type: ignore[no-untyped-def]
    spec = runtime.manifest.spec
    plan = request.resolve(spec, lambda steps: ddim_schedule(spec.scheduler, steps))
    return BatchJob(plan, lambda: None, None, future=None)  # type: ignore[arg-type]


def test_requests_that_differ_in_prompt_and_seed_merge(runtime) -> None:  # type: ignore[no-untyped-def]
    a = _job(runtime, SampleRequest(prompt="a red circle", seed=1, num_inference_steps=8))
    b = _job(runtime, SampleRequest(prompt=["a blue square", "x"], seed=2, num_inference_steps=8))
    assert merge_key(a.plan) == merge_key(b.plan)
    merged = merged_request([a, b])
    assert merged.prompt == ("a red circle", "a blue square", "x")
    assert merged.num_inference_steps == 8
    np.testing.assert_array_equal(merged.latents, np.concatenate([a.plan.latents, b.plan.latents]))


@pytest.mark.parametrize(
    "change",
    [
        {"num_inference_steps": 9},
        {"reflection_steps": 1},
        {"inversion": "exact"},
        {"strong_guidance": 3.0},
        {"weak_guidance": 2.0},
        {"denoiser_guidance": 2.0},
        {"output_type": "latent"},
        {"negative_prompt": "blurry"},
    ],
)
def test_a_field_that_changes_the_result_keeps_requests_apart(runtime, change) -> None:  # type: ignore[no-untyped-def]
    base = SampleRequest(prompt="a red circle", seed=1, num_inference_steps=8)
    a = _job(runtime, base)
    b = _job(runtime, dataclasses.replace(base, seed=2, **change))
    assert merge_key(a.plan) != merge_key(b.plan)


def test_a_field_added_to_the_request_type_is_neither_ignored_nor_dropped(runtime) -> None:  # type: ignore[no-untyped-def]
    base = RequestWithNewField(prompt="a red circle", seed=1, num_inference_steps=8)
    a = _job(runtime, base)
    b = _job(runtime, dataclasses.replace(base, seed=2, eta=0.5))
    assert merge_key(a.plan) != merge_key(b.plan), "batching ignored a new request field"
    c = _job(runtime, dataclasses.replace(base, seed=3, eta=0.5))
    assert merge_key(b.plan) == merge_key(c.plan)
    merged = merged_request([b, c])
    assert isinstance(merged, RequestWithNewField)
    assert merged.eta == 0.5, "the merged request dropped a new request field"
