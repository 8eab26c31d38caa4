"""`w2sd serve --ray`: the same app on Ray Serve with 2 replicas, including a replica
killed under load. Ray binds the machine's own address, so the scenario runs inside a
network namespace with only loopback up (`unshare -n`), with usage stats off and no
dashboard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
SCENARIO = Path(__file__).with_name("ray_scenario.py")


def _netns_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_ray_serve_two_replicas_survive_a_replica_kill(engine_dir):  # type: ignore[no-untyped-def]
    if not _netns_allowed():
        pytest.skip("needs `unshare -n` (root) and `ip` to give Ray a loopback-only network")
    # Ray's AF_UNIX socket paths must stay under 108 bytes: a short private temp dir.
    ray_tmp = tempfile.mkdtemp(prefix="w2sd-ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
    cmd = f"ip link set lo up && exec {sys.executable} {SCENARIO} {engine_dir} 8000"
    try:
        proc = subprocess.run(
            ["unshare", "-n", "bash", "-c", cmd],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["replicas_before"] == {"RUNNING": 2}
    assert report["before"] == [200] * 4 and report["deterministic"]
    # Killing a replica under load: nobody hangs, failures are clear 5xx, never 4xx.
    assert report["hung_clients"] == 0
    assert report["during_count"] > 0
    assert set(report["during"]) <= {"200", "500", "502", "503", "504"}
    assert report["replicas_after"] == {"RUNNING": 2}
    assert report["after"] == [200] * 4
