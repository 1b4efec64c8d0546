"""Starting or joining Ray the same way in every stage.

Under ``ray job submit`` (``RAY_ADDRESS`` set) we join the cluster. Locally we start one with
more logical CPUs than cores: on a 2-core machine Ray otherwise deadlocks silently as soon as
two stages (e.g. Ray Data actors + a Train worker) each want a whole CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

LOCAL_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Keep a local cluster on 127.0.0.1 (otherwise Ray binds to the machine's external address).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


# Where Ray's state API (``ray.util.state``) finds this cluster's dashboard.
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"

_started_here = False  # True when init_ray started the cluster (no autoscaler: its resources are final)


def init_ray(num_cpus: int | None = None, quiet: bool = False) -> None:
    """Idempotent: connect to ``$RAY_ADDRESS`` if set (``auto`` = the cluster on this machine),
    else start a local loopback cluster of our own.

    ``quiet``: keep Ray's worker logs (every training step, vLLM's start-up) and Ray Data's
    progress lines off the console — they stay in ``/tmp/ray/session_latest/logs`` — so a
    long command shows only its own stage lines and progress bars.
    """
    import ray

    if ray.is_initialized():
        return
    for k, v in LOCAL_ENV.items():
        os.environ.setdefault(k, v)
    if quiet:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        for name in ("ray.data", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=not quiet)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = num_cpus or max(8, 4 * (os.cpu_count() or 1))
    log.info("starting a local Ray cluster on 127.0.0.1 with %d logical CPUs", cpus)
    # address="local": a new cluster of our own, even if another one runs on this machine
    # (set RAY_ADDRESS=auto to join that one instead).
    global _started_here
    _started_here = True
    # With a dashboard of its own, named to every worker: Ray Train's PlacementGroupCleaner polls
    # the state API, which otherwise looks up "the" cluster on this machine. When another cluster
    # runs here it asks that one: it hangs (12 s at the end of every training run) or hears "no
    # such actor" and takes the controller for dead.
    from scotd.localcluster.head import free_port

    dash_port = free_port()
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dash_port,
        runtime_env={"env_vars": {API_SERVER_ENV: f"http://127.0.0.1:{dash_port}"}},
        log_to_driver=not quiet,
        _node_ip_address="127.0.0.1",
    )


def require_resources(resources: Mapping[str, float], field: str) -> None:
    """Fail before anything is spent when ``field`` asks for Ray resources no node can ever have.

    Only on a cluster this process started (its resources are fixed): a joined cluster may be
    autoscaled, and its autoscaler starts the node types that have them.
    """
    import ray

    if not resources or not _started_here:
        return
    have = ray.cluster_resources()
    missing = sorted(k for k, v in resources.items() if have.get(k, 0.0) < v)
    if missing:
        raise ValueError(
            f"{field} asks for Ray resources {missing} that this local cluster has none of; they name node types "
            "of a real cluster (cluster/aws.yaml, `scotd cluster-local up`): drop them for a local run, or "
            "submit the job to that cluster"
        )


def batch_rows(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a Ray Data numpy batch, numpy scalars turned into Python values (JSON-safe)."""
    n = len(next(iter(batch.values()))) if batch else 0
    return [{c: _py(batch[c][i]) for c in batch} for i in range(n)]


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
