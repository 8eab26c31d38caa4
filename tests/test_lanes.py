"""The lane scheduler on CPU (lanes are threads): concurrent results equal sequential
ones, requests start in order and none starves, and a failure or cancellation in one
lane leaves the others intact."""

from __future__ import annotations

import threading
from itertools import pairwise

import numpy as np
import pytest

from w2sd import CancelledError, InvalidArgumentError


def _requests(n: int, **extra):  # type: ignore[no-untyped-def]
    return [
        dict(
            prompt=f"a cat number {i}",
            seed=i,
            output_type="latent",
            num_inference_steps=6,
            reflection_steps=3,
            **extra,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_concurrent_equals_sequential(runtime, lanes):  # type: ignore[no-untyped-def]
    reqs = _requests(5)
    sequential = [runtime.sample(**r) for r in reqs]
    concurrent = runtime.sample_many(reqs, lanes=lanes)
    assert len(concurrent) == len(reqs)
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)


def test_requests_start_in_order_and_every_lane_works(runtime):  # type: ignore[no-untyped-def]
    runtime.sample_many(_requests(6), lanes=2)
    stats = runtime.last_many_stats
    starts = [s["start_seq"] for s in stats]
    assert starts == sorted(starts)  # request j starts before request j + 1 (FIFO)
    assert {s["lane"] for s in stats} == {0, 1}  # no lane sits idle
    # A lane takes the next request only after finishing its current one.
    for lane in (0, 1):
        mine = sorted((s["start_seq"], s["end_seq"]) for s in stats if s["lane"] == lane)
        assert all(prev_end < start for (_, prev_end), (start, _) in pairwise(mine))


def test_two_requests_are_in_flight_at_once(runtime):  # type: ignore[no-untyped-def]
    """Each request waits at its first step until the other has started: this only
    finishes if the two really run concurrently (a barrier with a timeout)."""
    barrier = threading.Barrier(2, timeout=30)

    def meet(done: int, total: int) -> bool:
        if done == 1:
            barrier.wait()
        return True

    reqs = [dict(r, callback=meet) for r in _requests(2)]
    out = runtime.sample_many(reqs, lanes=2)
    assert len(out) == 2 and not barrier.broken


def test_cancellation_in_one_lane_does_not_touch_the_others(runtime):  # type: ignore[no-untyped-def]
    reqs = _requests(4)
    expected = [runtime.sample(**r) for r in reqs]
    reqs[1]["callback"] = lambda done, total: done < 2
    out = runtime.sample_many(reqs, lanes=2, return_exceptions=True)
    assert isinstance(out[1], CancelledError)
    for i in (0, 2, 3):
        np.testing.assert_array_equal(out[i], expected[i])
    with pytest.raises(CancelledError):
        runtime.sample_many(reqs, lanes=2)


def test_failure_in_one_lane_does_not_touch_the_others(runtime):  # type: ignore[no-untyped-def]
    reqs = _requests(3)
    expected = [runtime.sample(**r) for r in reqs]

    def boom(done: int, total: int) -> bool:
        raise RuntimeError("lane failure")

    reqs[0]["callback"] = boom
    out = runtime.sample_many(reqs, lanes=3, return_exceptions=True)
    assert isinstance(out[0], Exception) and "lane failure" in str(out[0])
    for i in (1, 2):
        np.testing.assert_array_equal(out[i], expected[i])


def test_bad_requests(runtime):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match="lanes must be a positive int"):
        runtime.sample_many(_requests(1), lanes=0)
    with pytest.raises(InvalidArgumentError, match=r"requests\[0\]: prompt must be a str"):
        runtime.sample_many([{"seed": 1}])
    with pytest.raises(InvalidArgumentError, match=r"requests\[0\] must be a SampleRequest"):
        runtime.sample_many(["a cat"])
    with pytest.raises(InvalidArgumentError, match=r"requests\[0\]: unknown sample argument") as e:
        runtime.sample_many([{"prompt": "x", "stepz": 3}])
    assert e.value.param == "stepz"
    out = runtime.sample_many(
        [_requests(1)[0], {"prompt": "x", "num_inference_steps": 0}], return_exceptions=True
    )
    assert isinstance(out[0], np.ndarray)
    assert isinstance(out[1], InvalidArgumentError)
    assert out[1].param == "num_inference_steps"


class _CallbackFailure(Exception):
    pass


@pytest.mark.parametrize("lanes", [1, 2])
def test_callback_errors_keep_their_class_under_sample_many(runtime, lanes):  # type: ignore[no-untyped-def]
    """A callback's own exception, and a cancellation, come back from sample_many as the
    same exception classes that sample() raises (one translation, in the binding)."""

    def raises(done: int, total: int) -> bool:
        if done == 2:
            raise _CallbackFailure("from the callback")
        return True

    def cancels(done: int, total: int) -> bool:
        return done < 3

    base = {"prompt": "a cat", "seed": 1, "num_inference_steps": 6, "reflection_steps": 2}
    with pytest.raises(_CallbackFailure, match="from the callback"):
        runtime.sample(**base, callback=raises)
    with pytest.raises(CancelledError, match="after step 3"):
        runtime.sample(**base, callback=cancels)
    out = runtime.sample_many(
        [{**base, "callback": raises}, {**base, "callback": cancels}, base],
        lanes=lanes,
        return_exceptions=True,
    )
    assert type(out[0]) is _CallbackFailure and str(out[0]) == "from the callback"
    assert type(out[1]) is CancelledError
    assert not isinstance(out[2], Exception)
    with pytest.raises(_CallbackFailure):
        runtime.sample_many([base, {**base, "callback": raises}], lanes=lanes)
