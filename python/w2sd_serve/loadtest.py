"""A bounded load test of ``w2sd serve`` on this machine (loopback only).

    python -m w2sd_serve.loadtest ENGINE_DIR [--requests 40] [--json out.json]

For each server configuration (lanes, max batch) it starts its own server on
127.0.0.1 (all at once), warms them up, then sends a fixed number of requests at
concurrency 1, 2, 4 and 8 with an asyncio httpx client, the configurations interleaved
in rounds: p50/p95/p99 latency, throughput, errors. It also
checks the queue bound (429s above it, none below) and memory growth (RSS after 500
requests vs after the first 50). Every request loop is bounded in count and time, and
every server is stopped by its own process id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BODY = {"prompt": "a red bicycle", "num_inference_steps": 10, "reflection_steps": 5}
CONFIGS = {
    "1 lane": ["--lanes", "1"],
    "2 lanes": ["--lanes", "2"],
    "1 lane, max batch 4": ["--lanes", "1", "--max-batch", "4"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(engine: str, *args: str) -> Iterator[tuple[str, int]]:
    """(base url, pid) of a fresh `w2sd serve` on 127.0.0.1, stopped on exit."""
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "w2sd_cli", "serve", engine, "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield url, proc.pid
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _run(url: str, concurrency: int, total: int, seed0: int = 0) -> dict[str, Any]:
    """`total` requests, at most `concurrency` in flight: latencies, status counts, wall."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < total:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        "/v1/images/generations", json={**BODY, "seed": seed0 + i}
                    )
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                if key == "200":
                    latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "statuses": statuses, "wall_s": wall}


def _summary(runs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    lat = np.asarray([x for r in runs for x in r["latencies"]] or [np.nan])
    statuses: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "p50_s": float(np.percentile(lat, 50)),
        "p95_s": float(np.percentile(lat, 95)),
        "p99_s": float(np.percentile(lat, 99)),
        "throughput_rps": statuses.get("200", 0) / sum(r["wall_s"] for r in runs),
    }


def latency_table(engine: str, requests: int, rounds: int = 4) -> list[dict[str, Any]]:
    """Every configuration's server up at once; at each concurrency the configurations run
    interleaved in rounds (A B C, A B C, ...) so that machine drift hits them alike."""
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(server(engine, *args, "--max-queue", "64"))[0]
            for name, args in CONFIGS.items()
        }
        for url in urls.values():
            asyncio.run(_run(url, 2, 6))  # warm-up
        rows = []
        for c in (1, 2, 4, 8):
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for _ in range(rounds):
                for name, url in urls.items():
                    runs[name].append(asyncio.run(_run(url, c, max(c, requests // rounds))))
            for name in urls:
                rows.append({"config": name, **_summary(runs[name], c)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def queue_bound(engine: str) -> dict[str, Any]:
    """One lane and a queue of 2: 8 concurrent clients must see 429s and nothing else bad."""
    with server(engine, "--lanes", "1", "--max-queue", "2") as (url, _):
        below = asyncio.run(_run(url, 3, 12))  # 1 running + 2 queued: all admitted
        above = asyncio.run(_run(url, 8, 32))
    return {"below": below["statuses"], "above": above["statuses"]}


def memory_growth(engine: str, first: int = 50, total: int = 500) -> dict[str, Any]:
    with server(engine, "--lanes", "1") as (url, pid):
        asyncio.run(_run(url, 4, first))
        after_first = rss_bytes(pid)
        asyncio.run(_run(url, 4, total - first, seed0=first))
        after_total = rss_bytes(pid)
    return {
        f"rss_after_{first}": after_first,
        f"rss_after_{total}": after_total,
        "growth": after_total / after_first - 1,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | concurrency | p50 | p95 | p99 | throughput | statuses |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['concurrency']} | {r['p50_s'] * 1000:.0f} ms | "
            f"{r['p95_s'] * 1000:.0f} ms | {r['p99_s'] * 1000:.0f} ms | "
            f"{r['throughput_rps']:.2f} img/s | {r['statuses']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m w2sd_serve.loadtest", description=__doc__)
    p.add_argument("engine_dir")
    p.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    p.add_argument("--json", default=None, help="write every figure to this file")
    args = p.parse_args(argv)
    result = {
        "body": BODY,
        "latency": latency_table(args.engine_dir, args.requests),
        "queue_bound": queue_bound(args.engine_dir),
        "memory": memory_growth(args.engine_dir),
    }
    print(markdown(result["latency"]))
    print(f"queue bound: {result['queue_bound']}")
    print(f"memory: {result['memory']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
