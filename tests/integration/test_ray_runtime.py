"""``init_ray`` without ``RAY_ADDRESS``: the local cluster every stage starts on a laptop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

# Runs in a fresh process (no RAY_ADDRESS), while the test session's own head is up on this machine:
# the case where Ray's state API, asked from a worker without an address, picks the wrong cluster.
SCRIPT = """
import json, time
import ray
from ray.util.state import get_actor
from scotd.ray_runtime import init_ray

init_ray(quiet=True)

@ray.remote(num_cpus=0)
class Probe:
    def ask(self):  # what Ray Train's PlacementGroupCleaner does every second
        t = time.monotonic()
        state = get_actor(ray.get_runtime_context().get_actor_id(), timeout=5)
        return {"state": state.state if state else None, "took_s": time.monotonic() - t}

out = ray.get(Probe.remote().ask.remote(), timeout=60)
out["cpus"] = ray.cluster_resources()["CPU"]
out["ips"] = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
print(json.dumps(out))
"""


def test_a_local_cluster_answers_the_state_api_from_its_workers(ray_head: object) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # Without its own dashboard named to the workers, this lookup reached the session head's
    # dashboard and got None ("no such actor"): Ray Train's cleaner reads that as a dead controller.
    assert out["state"] == "ALIVE", out
    assert out["cpus"] >= 8, "oversubscribed: Ray deadlocks on a 2-core machine otherwise"
    assert out["ips"] == ["127.0.0.1"], "a local cluster stays on loopback"
