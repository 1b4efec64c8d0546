"""A local Ray head for tests: ``ray start --head --block`` on 127.0.0.1, in its own process group.

Stopping kills exactly that group (``ray stop`` would stop every Ray cluster on the machine).
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scotd.httpjson import http_json

RAY_BIN = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def head_env() -> dict[str, str]:
    """This process's environment for Ray CLIs: no token auth, loopback, no proxies for 127.0.0.1,
    and this interpreter's ``bin/`` first on PATH, so a job's ``python`` is the one running the tests."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass(frozen=True)
class LocalHead:
    address: str  # GCS, for ray.init / RAY_ADDRESS
    dashboard_url: str | None  # job API (``ray job submit --address``), when started with one


class HeadStartError(RuntimeError):
    pass


@contextlib.contextmanager
def local_head(num_cpus: int = 8, dashboard: bool = False, timeout_s: float = 120) -> Iterator[LocalHead]:
    """Start a head (with the dashboard / job API when ``dashboard``), yield it, then kill its group."""
    port, dash_port = free_port(), free_port()
    cmd = [
        RAY_BIN, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
        "--node-ip-address=127.0.0.1", f"--include-dashboard={'true' if dashboard else 'false'}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
    ]  # fmt: skip
    env = head_env()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    head = LocalHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}" if dashboard else None)
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(head, env):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise HeadStartError(
                    f"the local Ray head did not start within {timeout_s:.0f} s (exit {proc.poll()})"
                )
            time.sleep(1)
        yield head
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)  # `ray start --block` drains up to 30 s; the rest gets SIGKILL
        # Workers and raylet share the group; anything left gets SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _ready(head: LocalHead, env: dict[str, str]) -> bool:
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
