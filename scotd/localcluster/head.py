"""A Ray head on 127.0.0.1 started with ``ray start --head --block`` in its own process group.

Stopping kills exactly that group — the head's raylet and workers, and every node the local
autoscaler started (they are the autoscaler's children) — where ``ray stop`` would stop every Ray
cluster on the machine. Every wait is bounded. Shared by ``scotd cluster-local`` and the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scotd.httpjson import http_json

RAY_BIN = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def head_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for Ray CLIs: no token auth, loopback, no proxies for 127.0.0.1,
    and this interpreter's ``bin/`` first on PATH, so a job's ``python`` is the one running here."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.pop("RAY_ADDRESS", None)  # a head of its own, never the caller's cluster
    return {**env, **(extra or {})}


class HeadStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class HeadProcess:
    pid: int  # of `ray start --block`, also its process group id
    address: str  # GCS, for ray.init / RAY_ADDRESS
    dashboard_url: str | None  # job API (``ray job submit --address``), when started with one


def start_head(
    num_cpus: float,
    dashboard: bool,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    log_path: str | None = None,
    timeout_s: float = 120,
    port: int | None = None,
) -> HeadProcess:
    """Start the head and wait until it answers (``ray status``, and the job API when ``dashboard``)."""
    port, dash_port = port or free_port(), free_port()
    cmd = [
        RAY_BIN, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus:g}",
        "--node-ip-address=127.0.0.1", f"--include-dashboard={'true' if dashboard else 'false'}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats", *(extra_args or []),
    ]  # fmt: skip
    env = env or head_env()
    if dashboard:  # the state API of this cluster's workers (Ray Train's PlacementGroupCleaner) asks here
        env = {**env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash_port}"}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = HeadProcess(proc.pid, f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}" if dashboard else None)
    deadline = time.monotonic() + timeout_s
    while not _ready(head, env):
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_head(head.pid)
            where = f"; see {log_path}" if log_path else ""
            raise HeadStartError(
                f"the local Ray head did not start within {timeout_s:.0f} s (exit {proc.poll()}){where}"
            )
        time.sleep(1)
    return head


def stop_head(pid: int, grace_s: float = 10) -> None:
    """SIGTERM the head's process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s  # `ray start --block` drains up to 30 s; the rest gets SIGKILL
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ready(head: HeadProcess, env: dict[str, str]) -> bool:
    status = subprocess.run(
        [RAY_BIN, "status", f"--address={head.address}"], env=env, capture_output=True, timeout=60
    )
    if status.returncode:
        return False
    if head.dashboard_url is None:
        return True
    try:
        return http_json("GET", f"{head.dashboard_url}/api/version", timeout=5).status == 200
    except OSError:
        return False
