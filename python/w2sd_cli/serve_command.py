"""``w2sd serve``: the engine over HTTP (FastAPI on uvicorn), or on Ray Serve."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an engine over HTTP (OpenAI Images API compatible); --ray for Ray Serve",
        description="Load the engine once and serve POST /v1/images/generations (OpenAI "
        'Images API shape plus W2SD fields; "stream": true for Server-Sent Events), '
        "GET /health, /ready and /metrics (Prometheus). Requests run on --lanes; at most "
        "--max-queue more wait, the rest get 429. SIGTERM drains in-flight requests.",
    )
    p.add_argument("engine_dir", help="engine dir built for --backend")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--backend", default="cpu", help="inference backend (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per session")
    p.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="requests running at once (default 1: on a CPU one request already uses every "
        "core; on a GPU 2-4 overlap one request's work with another's)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="merge requests that differ only in prompt and seed into batches of up to N "
        "images while the lanes are busy (default 1: off; results may then differ in the "
        "last bits from an unbatched run)",
    )
    p.add_argument(
        "--max-queue", type=int, default=8, help="requests waiting beyond the lanes (default 8)"
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=300.0,
        help="seconds from admission to result; later requests are cancelled (504)",
    )
    p.add_argument("--max-n", type=int, default=4, help="largest n (images per request)")
    p.add_argument("--max-prompt-chars", type=int, default=2000, help="longest prompt")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body")
    p.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/ routes"
    )
    p.add_argument(
        "--grace", type=float, default=30.0, help="seconds in-flight requests get after SIGTERM"
    )
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="take requests as soon as the engine is loaded, without first running one short "
        "request at the default size through every model (the first request then prepares "
        "what later ones reuse)",
    )
    p.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (with --ray)")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (with --ray; default: local)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from w2sd.errors import InvalidArgumentError
    from w2sd_serve.schema import Limits
    from w2sd_serve.server import ServeOptions, serve
    from w2sd_serve.service import ServiceSettings

    for name in ("lanes", "max_batch", "max_n", "max_prompt_chars", "max_body_bytes", "replicas"):
        if getattr(args, name) < 1:
            raise InvalidArgumentError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_queue < 0 or args.request_timeout <= 0:
        raise InvalidArgumentError("--max-queue must be >= 0 and --request-timeout > 0")
    opts = ServeOptions(
        engine_dir=args.engine_dir,
        host=args.host,
        port=args.port,
        backend=args.backend,
        threads=args.threads,
        service=ServiceSettings(
            lanes=args.lanes,
            max_queue=args.max_queue,
            request_timeout=args.request_timeout,
            max_batch=args.max_batch,
        ),
        limits=Limits(
            max_n=args.max_n,
            max_prompt_chars=args.max_prompt_chars,
            max_body_bytes=args.max_body_bytes,
        ),
        api_key=args.api_key,
        grace=args.grace,
        warm_up=args.warm_up,
    )
    if args.ray:
        from w2sd_serve.ray_app import serve_ray

        serve_ray(opts, args.replicas, args.ray_address)
    else:
        serve(opts)
