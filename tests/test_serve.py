"""`w2sd serve`: the OpenAI-compatible API, every error status, determinism, streaming,
disconnect-cancels, SIGTERM drain, API key, the official openai client. Servers bind
127.0.0.1 only and are stopped by their own process id."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from w2sd import InvalidArgumentError, W2SDRuntime
from w2sd_serve.client import ServerError, W2SDClient

PROMPT = "a red bicycle"
FAST = {"num_inference_steps": 6, "reflection_steps": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, engine: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a full pipe would stall the server. Closed in stop().
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "w2sd_cli",
                "serve",
                str(engine),
                "--port",
                str(self.port),
                *args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"server exited:\n{self.log.read()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("server did not become ready")

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # our own child, by its id
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def serving(engine: Path, *args: str) -> Iterator[Server]:
    server = Server(engine, *args)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(engine_dir: Path) -> Iterator[Server]:
    with serving(engine_dir, "--max-n", "3", "--max-prompt-chars", "100") as s:
        yield s


@pytest.fixture(scope="module")
def tight_server(engine_dir: Path) -> Iterator[Server]:
    """One lane, no queue, a 1.5 s deadline: for 429, 504 and cancellation."""
    with serving(engine_dir, "--lanes", "1", "--max-queue", "0", "--request-timeout", "1.5") as s:
        yield s


def _post(url: str, body: dict, **kw) -> httpx.Response:  # type: ignore[no-untyped-def,type-arg]
    return httpx.post(f"{url}/v1/images/generations", json=body, timeout=120, **kw)


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _in_flight_soon(server: Server, expected: float, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while server.metric("w2sd_in_flight") != expected:
        assert time.monotonic() < deadline, f"in_flight never reached {expected}"
        time.sleep(0.05)


def test_health_ready_metrics(server):  # type: ignore[no-untyped-def]
    assert httpx.get(f"{server.url}/health").json() == {"status": "alive"}
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready"}
    text = httpx.get(f"{server.url}/metrics").text
    for name in ("w2sd_requests", "w2sd_request_latency_seconds", "w2sd_queue_depth"):
        assert name in text
    for name in ("w2sd_in_flight", "w2sd_unet_calls", "w2sd_stage_seconds"):
        assert name in text


def test_generation_is_openai_shaped_deterministic_and_the_runtimes(server, engine_dir):  # type: ignore[no-untyped-def]
    body = {"prompt": PROMPT, "seed": 11, **FAST}
    first = _post(server.url, body)
    assert first.status_code == 200, first.text
    payload = first.json()
    assert set(payload) == {"created", "data", "w2sd"} and len(payload["data"]) == 1
    assert payload["w2sd"]["seed"] == 11 and payload["w2sd"]["unet_calls"] == 6 + 2 * 2
    assert set(payload["w2sd"]["timings"]) >= {"text_encode", "loop", "vae_decode", "e2e"}
    again = _post(server.url, body).json()
    assert again["data"][0]["b64_json"] == payload["data"][0]["b64_json"]  # byte-identical
    expected = W2SDRuntime(engine_dir).sample(PROMPT, seed=11, output_type="np", **FAST)
    np.testing.assert_array_equal(_pixels(payload["data"][0]["b64_json"]), expected[0])
    unseeded = _post(server.url, {"prompt": PROMPT, **FAST}).json()
    assert isinstance(unseeded["w2sd"]["seed"], int)  # reported, so it can be replayed


def test_n_and_size(server):  # type: ignore[no-untyped-def]
    r = _post(server.url, {"prompt": PROMPT, "n": 3, "size": "48x32", "seed": 1, **FAST})
    assert r.status_code == 200, r.text
    images = [_pixels(d["b64_json"]) for d in r.json()["data"]]
    assert [im.shape for im in images] == [(32, 48, 3)] * 3
    assert r.json()["w2sd"]["size"] == "48x32"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"reflection_steps": 40}, "reflection_steps"),
        ({"reflection_steps": [1, 1]}, "reflection_steps"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"seed": "7"}, "seed"),
        ({"inversion": "textbook"}, "inversion"),
        ({"size": "big"}, "size"),
        ({"size": "4096x4096"}, "size"),
        ({"size": "60x64"}, "size"),
        ({"n": 4}, "n"),
        ({"n": 0}, "n"),
        ({"prompt": "x" * 101}, "prompt"),
        ({"weak_prompt": "y" * 101}, "weak_prompt"),
        ({"response_format": "url"}, "response_format"),
        ({"stepz": 3}, "stepz"),
        ({"strong_guidance": "high"}, "strong_guidance"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(server, body, param):  # type: ignore[no-untyped-def]
    r = _post(server.url, {"prompt": PROMPT, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert err["message"]


def test_missing_prompt_and_bad_json(server):  # type: ignore[no-untyped-def]
    r = _post(server.url, {"seed": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    for content, message in (
        (b"{not json", "body is not valid JSON: Expecting property name"),
        (b"[" * 100_000 + b"]" * 100_000, "There was an error parsing the body"),
    ):
        r = httpx.post(
            f"{server.url}/v1/images/generations",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400
        err = r.json()["error"]  # the OpenAI shape, not FastAPI's {"detail": ...}
        assert err["type"] == "invalid_request_error" and err["param"] is None
        assert err["message"].startswith(message), err
    r = httpx.get(f"{server.url}/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"


def test_body_size_is_bounded(server):  # type: ignore[no-untyped-def]
    r = _post(server.url, {"prompt": PROMPT, "user": "u" * (2 << 20)})
    assert r.status_code == 413


def test_queue_full_is_429_and_deadline_is_504(tight_server):  # type: ignore[no-untyped-def]
    s = tight_server
    results: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: results.update(
            slow=_post(s.url, {"prompt": PROMPT, "num_inference_steps": 900, "reflection_steps": 0})
        )
    )
    slow.start()
    _in_flight_soon(s, 1)
    busy = _post(s.url, {"prompt": PROMPT, **FAST})
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["type"] == "rate_limit_error"
    slow.join(60)
    assert results["slow"].status_code == 504, results["slow"].text
    assert results["slow"].json()["error"]["type"] == "timeout_error"
    _in_flight_soon(s, 0)
    assert _post(s.url, {"prompt": PROMPT, **FAST}).status_code == 200  # still serving
    assert s.metric('w2sd_requests_total{status="timeout"}') >= 1
    assert s.metric('w2sd_requests_total{status="rejected"}') >= 1


def test_client_disconnect_cancels_the_request(tight_server):  # type: ignore[no-untyped-def]
    s = tight_server
    before = s.metric('w2sd_requests_total{status="cancelled"}')
    body = {"prompt": PROMPT, "num_inference_steps": 900, "reflection_steps": 0, "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{s.url}/v1/images/generations", json=body) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("event: progress"):
                break  # one step done: hang up
    deadline = time.monotonic() + 10
    while s.metric('w2sd_requests_total{status="cancelled"}') == before:
        assert time.monotonic() < deadline, "the request was not cancelled"
        time.sleep(0.05)
    _in_flight_soon(s, 0, timeout=5)  # the lane is free again
    assert _post(s.url, {"prompt": PROMPT, **FAST}).status_code == 200


def test_streaming_sends_a_progress_event_per_step(server):  # type: ignore[no-untyped-def]
    steps: list[tuple[int, int]] = []
    with W2SDClient(server.url) as client:
        streamed = client.stream(
            PROMPT, seed=5, on_progress=lambda d, t: steps.append((d, t)), **FAST
        )
        plain = client.generate(PROMPT, seed=5, **FAST)
        with pytest.raises(InvalidArgumentError) as e:
            client.stream(PROMPT, reflection_steps=99)
    assert steps == [(i, 6) for i in range(1, 7)]
    assert streamed.png == plain.png
    assert e.value.param == "reflection_steps"


def test_api_key(engine_dir):  # type: ignore[no-untyped-def]
    with serving(engine_dir, "--api-key", "sekrit") as s:
        body = {"prompt": PROMPT, **FAST}
        assert _post(s.url, body).status_code == 401
        assert _post(s.url, body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert _post(s.url, body, headers={"Authorization": "Bearer sekrit"}).status_code == 200
        assert httpx.get(f"{s.url}/health").status_code == 200  # probes need no key
        with W2SDClient(s.url, api_key="nope") as client, pytest.raises(ServerError) as e:
            client.generate(PROMPT, **FAST)
        assert e.value.status == 401


def test_sigterm_drains_in_flight_requests(engine_dir):  # type: ignore[no-untyped-def]
    s = Server(engine_dir, "--grace", "60")
    try:
        results: dict[str, httpx.Response] = {}
        body = {"prompt": PROMPT, "num_inference_steps": 300, "reflection_steps": 0}
        t = threading.Thread(target=lambda: results.update(r=_post(s.url, body)))
        t.start()
        _in_flight_soon(s, 1)
        os.kill(s.proc.pid, signal.SIGTERM)
        t.join(90)
        assert results["r"].status_code == 200  # finished, not dropped
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{s.url}/health", timeout=2)
    finally:
        s.stop()


def test_official_openai_client_gets_an_image(server):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    result = client.images.generate(
        model="w2sd",
        prompt=PROMPT,
        size="64x64",
        response_format="b64_json",
        extra_body={"seed": 2, **FAST},
    )
    assert _pixels(result.data[0].b64_json).shape == (64, 64, 3)


def test_internal_error_is_a_500_and_the_server_keeps_serving(engine_dir):  # type: ignore[no-untyped-def]
    """In process (ASGI transport): one failing runtime call, then a normal one."""
    from w2sd_serve.app import create_app
    from w2sd_serve.schema import Limits
    from w2sd_serve.service import ImageService, ServiceSettings

    runtime = W2SDRuntime(engine_dir)
    service = ImageService(runtime, ServiceSettings())
    app = create_app(service, Limits())
    real_run = runtime.run
    calls = {"n": 0}

    def flaky(request):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated backend crash")
        return real_run(request)

    runtime.run = flaky  # type: ignore[method-assign]

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            body = {"prompt": PROMPT, **FAST}
            first = await c.post("/v1/images/generations", json=body)
            second = await c.post("/v1/images/generations", json=body)
            return first, second

    first, second = asyncio.run(scenario())
    service.shutdown()
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "server_error"
    assert "simulated backend crash" in first.json()["error"]["message"]
    assert second.status_code == 200
    metrics = json.dumps(first.json())
    assert "Traceback" not in metrics


def test_max_batch_merges_queued_requests(engine_dir):  # type: ignore[no-untyped-def]
    """--max-batch: requests queued behind a busy lane run as one batch; each keeps its own
    seed, and its image matches its unbatched run within the spec's image bound."""
    from conftest import assert_images_match

    with serving(engine_dir, "--lanes", "1", "--max-batch", "4", "--max-queue", "8") as s:
        results: dict[int, httpx.Response] = {}
        slow = {"prompt": PROMPT, "num_inference_steps": 150, "reflection_steps": 0}
        threads = [threading.Thread(target=lambda: results.update({-1: _post(s.url, slow)}))]
        threads[0].start()
        _in_flight_soon(s, 1)
        prompts = ["a red bicycle", "a blue car", "a cat", "a dog"]
        for i, p in enumerate(prompts):
            body = {"prompt": p, "seed": 20 + i, **FAST}
            threads.append(
                threading.Thread(target=lambda i=i, b=body: results.update({i: _post(s.url, b)}))
            )
            threads[-1].start()
        for t in threads:
            t.join(120)
        assert all(r.status_code == 200 for r in results.values())
        merged = [results[i].json()["w2sd"]["batched_with"] for i in range(4)]
        assert max(merged) >= 1, merged
        rt = W2SDRuntime(engine_dir)
        for i, p in enumerate(prompts):
            assert results[i].json()["w2sd"]["seed"] == 20 + i
            alone = rt.sample(p, seed=20 + i, output_type="np", **FAST)[0]
            assert_images_match(_pixels(results[i].json()["data"][0]["b64_json"]), alone)


@pytest.mark.parametrize("warm_up", [True, False])
def test_the_server_warms_the_engine_up_before_taking_requests(engine_dir, warm_up):  # type: ignore[no-untyped-def]
    """By default one short request runs through every model before the app exists (the
    first user's request then runs as fast as later ones); --no-warm-up skips it."""
    from w2sd_serve.server import ServeOptions, build_app

    _, service = build_app(ServeOptions(engine_dir=str(engine_dir), warm_up=warm_up))
    stats = service.runtime.last_stats
    if warm_up:
        assert stats["unet_calls"] == 4 and stats["vae_decode_s"] > 0
        assert stats["height"] == service.runtime.manifest.spec.image.default_height
    else:
        assert stats == {}
    assert service.metrics.unet_calls._value.get() == 0  # not counted as served
