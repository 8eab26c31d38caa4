"""``w2sd serve``: one engine, loaded once, behind uvicorn on one machine.

SIGTERM/SIGINT: stop accepting (``/ready`` turns 503 and new connections are refused),
let in-flight requests finish within ``--grace`` seconds, exit 0.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from w2sd.runtime import W2SDRuntime

from .app import BodyLimit, create_app
from .schema import Limits
from .service import ImageService, ServiceSettings


@dataclass(frozen=True)
class ServeOptions:
    engine_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "cpu"
    threads: int | None = None
    service: ServiceSettings = field(default_factory=ServiceSettings)
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    grace: float = 30.0  # seconds in-flight requests get after SIGTERM
    # One short request at the default size through every model before serving: the first
    # user's request then runs as fast as later ones (W2SDRuntime.warm_up).
    warm_up: bool = True


def build_app(opts: ServeOptions) -> tuple[Any, ImageService]:
    """The ASGI app (body limit included) and its service, with the engine loaded."""
    runtime = W2SDRuntime(
        opts.engine_dir, backend=opts.backend, threads=opts.threads, lanes=opts.service.lanes
    )
    if opts.warm_up:
        t0 = time.perf_counter()
        runtime.warm_up()
        print(f"w2sd serve: warmed up in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    service = ImageService(runtime, opts.service)
    app = create_app(service, opts.limits, opts.api_key)
    return BodyLimit(app, opts.limits.max_body_bytes), service


def serve(opts: ServeOptions) -> None:
    import uvicorn

    app, service = build_app(opts)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.accepting = False  # /ready -> 503 while in-flight requests finish
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal once it has shut down; a drained shutdown is a
            # clean one, so exit 0 instead.
            getattr(self, "_captured_signals", []).clear()

    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        timeout_graceful_shutdown=int(opts.grace),
        log_level="info",
    )
    server = DrainingServer(config)
    print(
        f"w2sd serve: {opts.engine_dir} ({opts.backend}, {opts.service.lanes} lane(s)) on "
        f"http://{opts.host}:{opts.port}",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    service.shutdown()
