"""Dynamic batching (``--max-batch N``): requests that differ only in their texts and seeds
are merged into one batch while every lane is busy (or within a short window), run as one
``SampleRequest`` whose latents are each member's own seeded latents, and split again.

A member keeps its own seed, cancellation and deadline: the merged run stops only when
every member is gone, and a member that went away gets its own error even if the batch
finished. Results can differ from an unbatched run in the last bits (the UNet runs at a
different batch size), which is why batching is opt-in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from w2sd.errors import CancelledError
from w2sd.manifest import ROLES
from w2sd.request import ResolvedRequest, SampleRequest
from w2sd.runtime import SampleResult


@dataclass(eq=False)
class BatchJob:
    plan: ResolvedRequest
    cancelled: Callable[[], BaseException | None]  # the member's reason to stop, if any
    progress: Callable[[int, int], None] | None
    future: asyncio.Future[SampleResult] = field(repr=False)

    @property
    def size(self) -> int:
        return self.plan.batch


# The fields in which members of one batch may differ: each member's texts, its seed or
# latents and its callback. Every other field of SampleRequest (and of any field added to
# it later) must be equal for requests to merge, and the merged request takes it from them.
TEXT_FIELDS = ("prompt", "negative_prompt") + tuple(
    f"{role}_{kind}" for role in ROLES for kind in ("prompt", "negative_prompt")
)
PER_MEMBER_FIELDS = frozenset((*TEXT_FIELDS, "seed", "latents", "callback"))


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return value


def merge_key(plan: ResolvedRequest) -> tuple[Any, ...]:
    """Requests with equal keys can run as one batch: every field that is not a member's own
    is equal (derived from the request type, so a new field is covered by itself), the same
    text fields are unset, and the latents have the same shape per image."""
    request = plan.request
    shared = tuple(
        (f.name, _hashable(getattr(request, f.name)))
        for f in fields(request)
        if f.name not in PER_MEMBER_FIELDS
    )
    unset = tuple(getattr(request, name) is None for name in TEXT_FIELDS)
    return (type(request), shared, unset, plan.latents.shape[1:])


def merged_request(jobs: list[BatchJob]) -> SampleRequest:
    """One request for every member: the first member's request with the texts and latents
    of all of them (the other fields are equal: merge_key)."""
    plans = [j.plan for j in jobs]

    def cat(get: Callable[[ResolvedRequest], list[str] | None]) -> tuple[str, ...] | None:
        parts = [get(p) for p in plans]
        return None if parts[0] is None else tuple(t for part in parts for t in part or [])

    texts: dict[str, Any] = {"prompt": cat(lambda p: p.prompts["strong"]), "negative_prompt": None}
    for role in ROLES:
        texts[f"{role}_prompt"] = cat(lambda p, r=role: p.prompts[r])  # type: ignore[misc]
        texts[f"{role}_negative_prompt"] = cat(lambda p, r=role: p.negative_prompts[r])  # type: ignore[misc]
    latents = np.concatenate([p.latents for p in plans])
    return replace(plans[0].request, **texts, seed=None, latents=latents, callback=None)


def run_merged(run: Callable[[SampleRequest], SampleResult], jobs: list[BatchJob]) -> list[Any]:
    """Run the batch on the calling lane; one SampleResult or exception per member."""

    def step(done: int, total: int) -> bool:
        for j in jobs:
            if j.progress is not None and j.cancelled() is None:
                j.progress(done, total)
        return any(j.cancelled() is None for j in jobs)

    try:
        result = run(replace(merged_request(jobs), callback=step))
    except CancelledError as e:
        return [j.cancelled() or e for j in jobs]
    except Exception as e:
        return [e] * len(jobs)
    out, start = [], 0
    for j in jobs:
        part = result.output[start : start + j.size]
        start += j.size
        reason = j.cancelled()
        stats = {**result.stats, "seed": j.plan.seed, "batched_with": len(jobs) - 1}
        out.append(reason if reason is not None else SampleResult(part, stats))
    return out


class Batcher:
    """Forms batches of up to `max_batch` images when a lane is free, waiting at most
    `window` seconds for compatible requests after the first one."""

    def __init__(
        self,
        lanes: int,
        max_batch: int,
        window: float,
        submit: Callable[[list[BatchJob]], asyncio.Future[list[Any]]],
    ) -> None:
        self.max_batch, self.window, self.submit = max_batch, window, submit
        self._lanes = asyncio.Semaphore(lanes)
        self._queue: asyncio.Queue[BatchJob] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, job: BatchJob) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._dispatch())
        self._queue.put_nowait(job)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        held: deque[BatchJob] = deque()
        while True:
            await self._lanes.acquire()
            first = held.popleft() if held else await self._queue.get()
            batch, size, key = [first], first.size, merge_key(first.plan)
            for job in list(held):
                if merge_key(job.plan) == key and size + job.size <= self.max_batch:
                    held.remove(job)
                    batch.append(job)
                    size += job.size
            deadline = loop.time() + self.window
            while size < self.max_batch:
                try:
                    if self._queue.empty():
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        job = await asyncio.wait_for(self._queue.get(), remaining)
                    else:
                        job = self._queue.get_nowait()
                except TimeoutError:
                    break
                if merge_key(job.plan) == key and size + job.size <= self.max_batch:
                    batch.append(job)
                    size += job.size
                else:
                    held.append(job)
            future = self.submit(batch)
            future.add_done_callback(lambda f, b=batch: self._finish(f, b))

    def _finish(self, future: asyncio.Future[list[Any]], batch: list[BatchJob]) -> None:
        self._lanes.release()
        outcomes = future.result() if not future.cancelled() else None
        for i, job in enumerate(batch):
            if job.future.done():
                continue
            outcome = outcomes[i] if outcomes is not None else CancelledError("cancelled")
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
