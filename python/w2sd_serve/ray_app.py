"""``w2sd serve --ray``: the same FastAPI app as a Ray Serve deployment, N replicas, each
loading its own runtime. Needs ``pip install w2sd-runtime[ray]``.

Autoscaling: pass ``autoscaling_config`` through ``deployment_options`` (for example
``{"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": lanes}``) instead of
``num_replicas``. On GPU machines give each replica ``ray_actor_options={"num_gpus": 1}``
(or a fraction, to pack replicas on one GPU) and ``lanes`` per replica.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from .server import ServeOptions, build_app


def deployment(opts: ServeOptions, replicas: int, **deployment_options: Any) -> Any:
    """A bound Ray Serve application: `replicas` copies of the w2sd app."""
    from ray import serve

    @serve.deployment(
        name="w2sd",
        num_replicas=replicas,
        max_ongoing_requests=opts.service.lanes + opts.service.max_queue,
        **deployment_options,
    )
    @serve.ingress()
    class W2SDDeployment:
        def __init__(self, options: ServeOptions) -> None:
            # Not `self.app`: the ingress wrapper owns that name.
            self._w2sd_app, self._w2sd_service = build_app(options)

        def __serve_build_asgi_app__(self) -> Any:
            return self._w2sd_app

    return W2SDDeployment.bind(opts)


def serve_ray(opts: ServeOptions, replicas: int, address: str | None) -> None:
    """Start (or join) Ray, run the deployment on opts.host:opts.port, block until Ctrl-C."""
    import signal
    import threading

    import ray
    from ray import serve

    ray.init(address=address, include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": opts.host, "port": opts.port})
    serve.run(deployment(opts, replicas), name="w2sd", route_prefix="/")
    print(
        f"w2sd serve --ray: {replicas} replica(s) of {opts.engine_dir} on "
        f"http://{opts.host}:{opts.port}",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    serve.shutdown()
    ray.shutdown()
