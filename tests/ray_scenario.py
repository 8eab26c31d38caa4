"""Ray Serve scenario for tests/test_serve_ray.py; run inside a network namespace that has
only loopback (the test does it: `unshare -n`, `ip link set lo up`).

Two replicas of the w2sd app; requests succeed; one replica is killed under load; every
in-flight request ends (200 or a 5xx, never a hang); Ray restarts the replica and
requests succeed again. Prints one JSON line with what happened.

usage: python ray_scenario.py ENGINE_DIR PORT
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402

from w2sd_serve.ray_app import deployment  # noqa: E402
from w2sd_serve.server import ServeOptions  # noqa: E402
from w2sd_serve.service import ServiceSettings  # noqa: E402

FAST = {"num_inference_steps": 6, "reflection_steps": 2}


def replica_states() -> dict[str, int]:
    status = serve.status().applications["w2sd"].deployments["w2sd"]
    return {str(k): v for k, v in status.replica_states.items()}


def main() -> int:
    engine, port = sys.argv[1], int(sys.argv[2])
    url = f"http://127.0.0.1:{port}/v1/images/generations"
    report: dict[str, object] = {}
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        log_to_driver=True,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        opts = ServeOptions(engine_dir=engine, service=ServiceSettings(lanes=1, max_queue=4))
        serve.run(
            deployment(opts, 2, ray_actor_options={"num_cpus": 1}), name="w2sd", route_prefix="/"
        )
        report["replicas_before"] = replica_states()
        with httpx.Client(timeout=120) as client:
            first = [
                client.post(url, json={"prompt": "a cat", "seed": i, **FAST}) for i in range(4)
            ]
            report["before"] = [r.status_code for r in first]
            report["deterministic"] = (
                client.post(url, json={"prompt": "a cat", "seed": 1, **FAST}).json()["data"]
                == first[1].json()["data"]
            )

        # Load: 4 clients sending slower requests while one replica is killed.
        statuses: list[int | str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    body = {"prompt": "a dog", "num_inference_steps": 60, "reflection_steps": 5}
                    try:
                        code: int | str = client.post(url, json=body).status_code
                    except httpx.HTTPError as e:
                        code = type(e).__name__
                    with lock:
                        statuses.append(code)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        names = [
            a
            for a in ray.util.list_named_actors(all_namespaces=True)
            if "SERVE_REPLICA" in a["name"] and "w2sd" in a["name"]
        ]
        victim = names[0]
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        killed_at = time.monotonic()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(150)
        report["hung_clients"] = sum(t.is_alive() for t in threads)
        report["during"] = sorted({str(s) for s in statuses})
        report["during_count"] = len(statuses)

        # Recovery: Ray brings the replica back and requests succeed again.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and replica_states().get("RUNNING", 0) < 2:
            time.sleep(0.5)
        report["replicas_after"] = replica_states()
        report["recovered_in_s"] = round(time.monotonic() - killed_at, 1)
        with httpx.Client(timeout=120) as client:
            report["after"] = [
                client.post(url, json={"prompt": "a cat", "seed": i, **FAST}).status_code
                for i in range(4)
            ]
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
