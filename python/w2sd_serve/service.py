"""One engine behind a bounded queue: admission (or 429), lanes, deadlines, cancellation
and metrics. The HTTP app (app.py) and the Ray deployment (ray_app.py) both use it.

Requests run on ``lanes`` worker threads, each calling ``W2SDRuntime.run`` (the core
releases the GIL). At most ``lanes + max_queue`` requests are admitted at once; the rest
are refused at once. A request is cancelled at the next step boundary when its deadline
passes or its client goes away, through the runtime's progress callback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from w2sd.errors import CancelledError, W2SDError
from w2sd.request import ResolvedRequest, SampleRequest
from w2sd.runtime import SampleResult, W2SDRuntime

from .batching import Batcher, BatchJob, run_merged


@dataclass(frozen=True)
class ServiceSettings:
    lanes: int = 1
    max_queue: int = 8  # requests waiting for a lane, beyond the ones running
    request_timeout: float = 300.0  # seconds from admission to result
    retry_after: int = 1  # seconds, the Retry-After of a 429
    max_batch: int = 1  # images per merged batch (batching.py); 1: no merging
    # Seconds a free lane waits for more compatible requests; 0: merge only those already
    # queued, so an idle server never waits.
    batch_window: float = 0.0


class QueueFullError(W2SDError):
    """Every lane is busy and the queue is full."""


class DeadlineExceededError(W2SDError):
    """The request ran past its deadline and was cancelled."""


class ClientGoneError(W2SDError):
    """The client disconnected; the request was cancelled."""


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("w2sd_requests", "requests by final status", ["status"], registry=r)
        self.latency = Histogram(
            "w2sd_request_latency_seconds",
            "admission to result",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = Gauge("w2sd_queue_depth", "admitted requests waiting", registry=r)
        self.in_flight = Gauge("w2sd_in_flight", "requests running on a lane", registry=r)
        self.unet_calls = Counter("w2sd_unet_calls", "UNet calls made", registry=r)
        self.stage_seconds = Counter(
            "w2sd_stage_seconds", "seconds spent per stage", ["stage"], registry=r
        )


class _Cancel:
    """A request's cancellation state, read by the progress callback on its lane."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.client_gone = threading.Event()

    def reason(self) -> W2SDError | None:
        if self.client_gone.is_set():
            return ClientGoneError("the client disconnected; request cancelled")
        if time.monotonic() > self.deadline:
            return DeadlineExceededError("the request ran past its deadline and was cancelled")
        return None


class ImageService:
    def __init__(self, runtime: W2SDRuntime, settings: ServiceSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.metrics = _Metrics()
        self._pool = ThreadPoolExecutor(max_workers=settings.lanes, thread_name_prefix="w2sd-lane")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._batcher: Batcher | None = None
        self.accepting = True

    @property
    def ready(self) -> bool:
        return self.accepting

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.settings.lanes + self.settings.max_queue:
                raise QueueFullError(
                    f"server busy: {self._admitted} requests admitted "
                    f"({self.settings.lanes} lanes, queue of {self.settings.max_queue})"
                )
            self._admitted += 1
            self.metrics.queue_depth.set(self._admitted - self._running)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1
            self.metrics.queue_depth.set(self._admitted - self._running)

    def _count_running(self, delta: int) -> None:
        with self._lock:
            self._running += delta
            self.metrics.in_flight.set(self._running)
            self.metrics.queue_depth.set(self._admitted - self._running)

    def _run_batch(self, jobs: list[BatchJob]) -> list[Any]:
        self._count_running(len(jobs))
        try:
            return run_merged(self.runtime.run, jobs)
        finally:
            self._count_running(-len(jobs))

    def _submit(
        self, request: SampleRequest, plan: ResolvedRequest, cancel: _Cancel, progress: Any
    ) -> Any:
        """The future of this request's result: on a lane of its own, or in a batch."""
        loop = asyncio.get_running_loop()
        if self.settings.max_batch <= 1:
            return loop.run_in_executor(self._pool, self._run_on_lane, request, cancel, progress)
        if self._batcher is None:
            self._batcher = Batcher(
                self.settings.lanes,
                self.settings.max_batch,
                self.settings.batch_window,
                lambda jobs: loop.run_in_executor(self._pool, self._run_batch, jobs),
            )
        job = BatchJob(plan, cancel.reason, progress, loop.create_future())
        self._batcher.put(job)
        return job.future

    def _run_on_lane(
        self, request: SampleRequest, cancel: _Cancel, progress: Callable[[int, int], None] | None
    ) -> SampleResult:
        gone = cancel.reason()
        if gone is not None:  # cancelled while queued
            raise gone
        self._count_running(1)
        try:

            def step(done: int, total: int) -> bool:
                if progress is not None:
                    progress(done, total)
                return cancel.reason() is None

            try:
                return self.runtime.run(replace(request, callback=step))
            except CancelledError:
                raise cancel.reason() or CancelledError("cancelled") from None
        finally:
            self._count_running(-1)

    async def generate(
        self,
        request: SampleRequest,
        client_gone: Callable[[], Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SampleResult:
        """Admit (or raise QueueFullError), run on a lane, and record the outcome.

        ``client_gone`` is an async callable polled while the request runs (the HTTP
        request's ``is_disconnected``); ``progress(done, total)`` runs on the lane."""
        try:
            plan = self.runtime.check(request)  # invalid requests never take a lane
        except W2SDError:
            self.metrics.requests.labels(status="invalid").inc()
            raise
        try:
            if not self.accepting:
                raise QueueFullError("server is shutting down")
            self._admit()
        except QueueFullError:
            self.metrics.requests.labels(status="rejected").inc()
            raise
        start = time.monotonic()
        cancel = _Cancel(start + self.settings.request_timeout)
        status = "error"
        watcher = None
        try:
            future = self._submit(request, plan, cancel, progress)
            if client_gone is not None:
                watcher = asyncio.create_task(self._watch(client_gone, cancel))
            try:
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                # The HTTP task was cancelled (client gone): stop the lane's work too.
                cancel.client_gone.set()
                raise
            status = "ok"
            self._record(result)
            return result
        except DeadlineExceededError:
            status = "timeout"
            raise
        except (ClientGoneError, asyncio.CancelledError):
            status = "cancelled"
            raise
        except W2SDError as e:
            status = "invalid" if isinstance(e, ValueError) else "error"
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
            self._release()
            self.metrics.requests.labels(status=status).inc()
            self.metrics.latency.observe(time.monotonic() - start)

    @staticmethod
    async def _watch(client_gone: Callable[[], Any], cancel: _Cancel) -> None:
        while not cancel.client_gone.is_set():
            if await client_gone():
                cancel.client_gone.set()
                return
            await asyncio.sleep(0.05)

    def _record(self, result: SampleResult) -> None:
        s = result.stats
        self.metrics.unet_calls.inc(s["unet_calls"])
        for stage in ("text_encode", "loop", "vae_decode"):
            self.metrics.stage_seconds.labels(stage=stage).inc(s[f"{stage}_s"])

    def shutdown(self) -> None:
        self.accepting = False
        self._pool.shutdown(wait=True, cancel_futures=False)


def png_b64(images: Any) -> list[str]:
    """uint8 (B, H, W, 3) -> base64 PNGs (deterministic bytes for the same pixels)."""
    from PIL import Image

    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out
