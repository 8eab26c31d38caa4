"""One error route: every C++ exception crosses the binding in one place and becomes the
same w2sd exception, with its param, whether it is raised (sample, run_loop) or returned
per request (sample_many, run_many); a Python exception from a progress callback comes back
as itself."""

from __future__ import annotations

import numpy as np
import pytest

from w2sd import (
    BackendError,
    CancelledError,
    InvalidArgumentError,
    NotFoundError,
    SampleRequest,
    W2SDError,
    testing,
)


@pytest.mark.parametrize(
    "code,cls",
    [
        ("invalid_argument", InvalidArgumentError),
        ("not_found", NotFoundError),
        ("backend", BackendError),
        ("cancelled", CancelledError),
        ("internal", W2SDError),
    ],
)
def test_core_error_codes_become_their_class_with_param(code, cls):  # type: ignore[no-untyped-def]
    with pytest.raises(cls, match="raised for a test") as info:
        testing.raise_error(code, "latents")
    assert type(info.value) is cls
    assert info.value.param == "latents"


def test_a_core_error_without_param_has_none():  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError) as info:
        testing.raise_error("invalid_argument")
    assert info.value.param is None


@pytest.mark.parametrize("kind", ["out_of_range", "bad_alloc", "not_an_exception"])
def test_other_cpp_exceptions_become_w2sd_errors(kind):  # type: ignore[no-untyped-def]
    """A std::out_of_range was an IndexError (pybind11's own translation) through sample but
    a W2SDError through sample_many: now both are W2SDError."""
    with pytest.raises(W2SDError) as info:
        testing.raise_error(kind)
    assert type(info.value) is W2SDError
    assert not isinstance(info.value, IndexError | MemoryError)


def _request(runtime, **fields):  # type: ignore[no-untyped-def]
    """The core's LoopRequest for a valid sample request, then `fields` overwritten."""
    prepared = runtime._prepare(
        SampleRequest(prompt="a cat", seed=0, num_inference_steps=3, reflection_steps=1)
    )
    request = prepared.core_request()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def _errors(runtime, request):  # type: ignore[no-untyped-def]
    """What run_loop raises and what run_many returns for the same request."""
    with pytest.raises(BaseException) as raised:
        runtime._engine.run_loop(request)
    (result,) = runtime._engine.run_many([request], 1)
    assert result.latents is None
    return raised.value, result.error


@pytest.mark.parametrize(
    "fields,cls,param",
    [
        ({"reflection": 5}, InvalidArgumentError, "reflection_steps"),
        ({"reflection": [0, 0]}, InvalidArgumentError, "reflection_steps"),
        ({"num_inference_steps": 0}, InvalidArgumentError, "num_inference_steps"),
        ({"inversion": "textbook"}, InvalidArgumentError, "inversion"),
        ({"latents": np.zeros((1, 4, 8), np.float32)}, InvalidArgumentError, "latents"),
        ({"progress": lambda done, total: False}, CancelledError, None),
    ],
)
def test_run_loop_and_run_many_give_the_same_error(runtime, fields, cls, param):  # type: ignore[no-untyped-def]
    raised, returned = _errors(runtime, _request(runtime, **fields))
    assert type(raised) is cls and type(returned) is cls
    assert raised.param == param and returned.param == param
    assert str(raised) == str(returned)


def test_a_guided_role_without_uncond_names_its_guidance(runtime):  # type: ignore[no-untyped-def]
    request = _request(runtime)
    request.weak.uncond = None
    raised, returned = _errors(runtime, request)
    assert type(raised) is InvalidArgumentError and type(returned) is InvalidArgumentError
    assert raised.param == returned.param == "weak_guidance"


def test_a_callback_exception_comes_back_as_itself(runtime):  # type: ignore[no-untyped-def]
    def boom(done: int, total: int) -> bool:
        raise KeyError("from callback")

    raised, returned = _errors(runtime, _request(runtime, progress=boom))
    assert type(raised) is KeyError and type(returned) is KeyError


def test_sample_and_sample_many_raise_the_same_class(runtime):  # type: ignore[no-untyped-def]
    """Through the runtime: a cancelled request is a CancelledError both ways."""
    options = dict(prompt="a cat", seed=0, num_inference_steps=3, reflection_steps=1)
    stop = dict(callback=lambda done, total: False)
    with pytest.raises(CancelledError) as one:
        runtime.sample(**options, **stop)
    (many,) = runtime.sample_many([{**options, **stop}], return_exceptions=True)
    assert type(many) is CancelledError
    assert str(many) == str(one.value)
