"""Shared test setup: keep everything on 127.0.0.1 and offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Hub lookups must fail fast and locally: point the hub at a closed loopback port.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data directory {SHARED_DATA} is missing; tests need it")
    return SHARED_DATA


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One local Ray head for the whole session (``ray start``), on 127.0.0.1, oversubscribed.

    Drivers in subprocesses join it through ``RAY_ADDRESS``; the test process joins with
    ``ray.init(address=...)``. Stopped with ``ray stop`` at the end.
    """
    import subprocess
    import sys

    port = _free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [
        ray_bin,
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=8",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    subprocess.run(cmd, check=True, env=env, timeout=120, capture_output=True)
    address = f"127.0.0.1:{port}"
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        os.environ.pop("RAY_ADDRESS", None)
        subprocess.run([ray_bin, "stop", "--force"], env=env, timeout=120, capture_output=True)


@pytest.fixture(scope="session")
def ray_session(ray_address: str):  # type: ignore[no-untyped-def]
    """The test process connected to the session's Ray cluster."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    yield ray_address
