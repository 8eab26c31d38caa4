"""The FastAPI app: OpenAI-compatible ``POST /v1/images/generations`` (+ SSE streaming),
``/health``, ``/ready``, ``/metrics``. ``w2sd serve`` runs it on uvicorn; ``w2sd serve
--ray`` builds the same app inside each Ray Serve replica."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from w2sd.errors import InvalidArgumentError, W2SDError
from w2sd.runtime import SampleResult

from .schema import ImageGenerationRequest, Limits, error_body, to_sample_request
from .service import (
    ClientGoneError,
    DeadlineExceededError,
    ImageService,
    QueueFullError,
    png_b64,
)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413, read or declared."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        error_body(f"request body over {limit} bytes", "invalid_request_error"), status_code=413
    )


def _error(status: int, message: str, kind: str, param: str | None = None, **headers: str) -> Any:
    return JSONResponse(error_body(message, kind, param), status_code=status, headers=headers)


def _response(result: SampleResult) -> dict[str, Any]:
    s = result.stats
    return {
        "created": int(time.time()),
        "data": [{"b64_json": b} for b in png_b64(result.output)],
        "w2sd": {
            "seed": s["seed"],
            "unet_calls": s["unet_calls"],
            "size": f"{s['width']}x{s['height']}",
            "batched_with": s.get("batched_with", 0),
            "timings": {
                k.removesuffix("_s"): s[k]
                for k in ("text_encode_s", "loop_s", "unet_s", "vae_decode_s", "e2e_s")
            },
        },
    }


def failure(e: BaseException, retry_after: float) -> Any:
    """The one mapping of failures to HTTP statuses (OpenAI's error shape, ``param`` kept)."""
    if isinstance(e, QueueFullError):
        return _error(429, str(e), "rate_limit_error", **{"Retry-After": str(retry_after)})
    if isinstance(e, DeadlineExceededError):
        return _error(504, str(e), "timeout_error")
    if isinstance(e, ClientGoneError):
        return _error(499, str(e), "cancelled")
    if isinstance(e, InvalidArgumentError):
        # The body sets height and width through "size".
        param = "size" if e.param in ("height", "width") else e.param
        return _error(400, str(e), "invalid_request_error", param)
    param = e.param if isinstance(e, W2SDError) else None
    return _error(500, f"internal error: {type(e).__name__}: {e}", "server_error", param)


def _install_request_checks(app: FastAPI, api_key: str | None) -> None:
    """Bodies FastAPI refuses, its own 4xx, and the API key: answered in the OpenAI shape."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # loc is (body, character offset)
            where = first.get("loc", ("body", "?"))[-1]
            why = (first.get("ctx") or {}).get("error", first.get("msg"))
            return _error(
                400,
                f"body is not valid JSON: {why} (at character {where})",
                "invalid_request_error",
            )
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        return _error(
            400,
            f"{'.'.join(loc) or 'body'}: {first.get('msg')}",
            "invalid_request_error",
            loc[0] if loc else None,
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Any:
        """FastAPI's own 4xx (a body it cannot parse, say one nested too deeply; an unknown
        path or method) in the same OpenAI shape as every other error."""
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error(exc.status_code, str(exc.detail), kind, **(exc.headers or {}))

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if api_key is not None and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return _error(401, "missing or wrong API key", "invalid_request_error")
        return await call_next(request)


async def _events(service: ImageService, sample: Any) -> AsyncIterator[str]:
    """SSE: one `progress` event per step, then `result` (or `error`)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def progress(done: int, total: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("progress", (done, total)))

    async def run() -> None:
        try:
            result = await service.generate(sample, progress=progress)
            await queue.put(("result", _response(result)))
        except Exception as e:
            response = failure(e, service.settings.retry_after)
            await queue.put(("error", json.loads(response.body) | {"status": response.status_code}))

    task = asyncio.create_task(run())
    try:
        while True:
            kind, payload = await queue.get()
            if kind == "progress":
                data = {"step": payload[0], "total": payload[1]}
                yield f"event: progress\ndata: {json.dumps(data)}\n\n"
                continue
            yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n"
            return
    finally:
        # The client went away mid-stream (or we are done): stop the request.
        if not task.done():
            task.cancel()


def create_app(service: ImageService, limits: Limits, api_key: str | None = None) -> FastAPI:
    app = FastAPI(
        title="w2sd-runtime",
        description="Weak-to-Strong Diffusion with Reflection, OpenAI Images API compatible.",
    )
    app.state.service = service
    _install_request_checks(app, api_key)
    retry_after = service.settings.retry_after

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready")
    async def ready() -> Any:
        if service.ready:
            return {"status": "ready"}
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Any:
        return PlainTextResponse(
            generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.post("/v1/images/generations")
    async def generations(body: ImageGenerationRequest, request: Request) -> Any:  # type: ignore[valid-type]
        try:
            sample = to_sample_request(body, limits)
        except W2SDError as e:
            return failure(e, retry_after)
        if body.stream:  # type: ignore[attr-defined]
            return StreamingResponse(_events(service, sample), media_type="text/event-stream")
        try:
            result = await service.generate(sample, client_gone=request.is_disconnected)
        except Exception as e:  # every failure becomes a response; the server keeps serving
            return failure(e, retry_after)
        return _response(result)

    return app
