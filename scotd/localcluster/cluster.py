"""Start, watch and stop the local autoscaling cluster; kill one of its nodes.

The head runs the autoscaler (``ray start --head --autoscaling-config``) with Ray's fake
multi-node provider: each "node" it launches is a raylet on this machine with its type's
resources, in the head's process group. Everything this module reports about nodes comes from
the autoscaler's own status record in the GCS (the one ``ray status`` prints), so a test that
asserts on it asserts on what the autoscaler decided.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from scotd.localcluster.head import HeadProcess, head_env, start_head, stop_head
from scotd.localcluster.spec import HEAD_TYPE, LocalScale, autoscaling_config

PROVIDER = "scotd.localcluster.provider.LocalNodeProvider"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_LAUNCHER = REPO / "cluster" / "aws.yaml"
T = TypeVar("T")


@dataclass(frozen=True)
class LocalCluster:
    head: HeadProcess
    config_path: str  # the autoscaling config the head runs
    log_path: str

    @property
    def address(self) -> str:
        return self.head.address

    @property
    def dashboard_url(self) -> str:
        assert self.head.dashboard_url
        return self.head.dashboard_url

    # --- the autoscaler's view -------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The autoscaler's last status record (active/pending nodes by type, node id -> type)."""
        import ray._private.ray_constants as rc
        from ray._raylet import GcsClient  # type: ignore[attr-defined]

        raw = GcsClient(address=self.address).internal_kv_get(rc.DEBUG_AUTOSCALING_STATUS.encode(), None)
        return dict(json.loads(raw).get("autoscaler_report") or {}) if raw else {}

    def node_types(self) -> dict[str, str]:
        """Node id (hex) -> node type, for every node the autoscaler has (the head included)."""
        return dict(self.report().get("node_type_mapping") or {})

    def active(self) -> dict[str, int]:
        """Worker nodes by type, as the autoscaler counts them (the head left out)."""
        counts = dict(self.report().get("active_nodes") or {})
        counts.pop(HEAD_TYPE, None)
        return {k: int(v) for k, v in counts.items() if v}

    def actors(self, name_part: str, alive_only: bool = True) -> list[tuple[str, str]]:
        """(actor id, node id) of every actor whose class name contains ``name_part``."""
        from ray.util.state import list_actors

        filters: list[tuple[str, str, str | bool | int | float]] = (
            [("state", "=", "ALIVE")] if alive_only else []
        )
        found = list_actors(
            address=self.dashboard_url, filters=filters, limit=10_000, raise_on_missing_output=False
        )
        return [(a.actor_id, a.node_id or "") for a in found if name_part in (a.class_name or "")]

    def wait_for(self, what: str, check: Callable[[], T | None], timeout_s: float, every_s: float = 0.5) -> T:
        """Poll ``check`` until it returns something truthy; bounded, with a message naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s:.0f} s (autoscaler: {self.active()})")
            time.sleep(every_s)

    # --- faults ---------------------------------------------------------------------------
    def kill_node(self, node_id: str) -> int:
        """SIGKILL the raylet of one node (what a lost machine looks like to Ray); its pid."""
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if cmd and cmd[0].endswith("/raylet") and f"--node_id={node_id}" in cmd:
                os.kill(proc.pid, signal.SIGKILL)
                return int(proc.pid)
        raise LookupError(f"no raylet of node {node_id} is running")

    def down(self) -> None:
        stop_head(self.head.pid)


def up(
    launcher: str | Path = DEFAULT_LAUNCHER,
    scale: LocalScale | None = None,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    timeout_s: float = 120,
) -> LocalCluster:
    """Start the head with the autoscaler; worker nodes come and go with the work.

    ``env`` (e.g. ``AWS_ENDPOINT_URL`` for a local S3 server) reaches every node: nodes are
    children of the head's autoscaler and inherit its environment.
    """
    from scotd.localcluster.head import free_port

    scale = scale or LocalScale()
    spec = yaml.safe_load(Path(launcher).read_text())
    port = free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="scotd-cluster-local-")
    config_path = str(Path(workdir) / "autoscaling.json")
    config = autoscaling_config(spec, scale, f"127.0.0.1:{port}", PROVIDER)
    head_cpus = config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0)
    Path(config_path).write_text(json.dumps(config, indent=1))
    run_env = head_env(
        {
            "RAY_FAKE_CLUSTER": "1",  # the fake provider refuses to run without it
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "AUTOSCALER_HEARTBEAT_TIMEOUT_S": str(int(scale.heartbeat_timeout_s)),
            "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p),
            **(env or {}),
        }
    )
    log_path = str(Path(workdir) / "head.log")
    head = start_head(
        head_cpus, dashboard=True, extra_args=[f"--autoscaling-config={config_path}"],
        env=run_env, log_path=log_path, timeout_s=timeout_s, port=port,
    )  # fmt: skip
    return LocalCluster(head, config_path, log_path)


def save(cluster: LocalCluster, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(cluster), indent=1))


def load(path: Path) -> LocalCluster:
    data = json.loads(path.read_text())
    return LocalCluster(HeadProcess(**data["head"]), data["config_path"], data["log_path"])
