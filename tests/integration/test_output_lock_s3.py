"""The output lock on object storage (a lease object), against a local moto S3 server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from scotd import storage
from scotd.outlock import LOCK_FILE, OutputLocked, output_lock
from tests.integration.test_object_storage import BUCKET, s3_env  # noqa: F401  (module fixture)


@pytest.fixture
def on_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    yield f"s3://{BUCKET}/locked-{time.time_ns()}"


def test_a_lease_refuses_a_second_run_names_the_holder_and_expires(on_s3: str) -> None:
    loc = storage.location(on_s3)
    with output_lock(on_s3, "scotd sample (first)"):
        holder = json.loads(storage.read_bytes(loc, LOCK_FILE) or b"{}")
        assert holder["pid"] == os.getpid() and holder["expires_at"] > time.time()
        with (
            pytest.raises(OutputLocked, match=r"scotd sample \(first\) \(pid \d+"),
            output_lock(on_s3, "second"),
        ):
            pass
    assert storage.read_bytes(loc, LOCK_FILE) is None  # released on exit
    # A holder that died stops renewing: once its lease has expired the directory is taken over.
    storage.write_bytes(loc, LOCK_FILE, json.dumps({"pid": 1, "command": "dead", "expires_at": 0}).encode())
    with output_lock(on_s3, "after expiry"):
        assert json.loads(storage.read_bytes(loc, LOCK_FILE) or b"{}")["command"] == "after expiry"


def test_a_live_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(on_s3: str) -> None:
    """A job driver killed on the head leaves a lease with minutes to run; its resubmission (same
    host) takes it over now. A live holder here, or any holder on another host, still refuses."""
    import socket
    import subprocess
    import sys

    loc = storage.location(on_s3)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        since = time.time() - 5
        lease = {
            "host": socket.gethostname(),
            "command": "c",
            "since": since,
            "expires_at": time.time() + 100,
        }
        for holder, refused in [
            ({**lease, "pid": live.pid, "since": time.time() + 5}, True),  # alive, started before "since"
            ({**lease, "pid": live.pid, "host": "elsewhere"}, True),  # another machine: wait for expiry
            ({**lease, "pid": dead.pid}, False),  # gone: taken over at once
        ]:
            storage.write_bytes(loc, LOCK_FILE, json.dumps(holder).encode())
            if refused:
                with pytest.raises(OutputLocked), output_lock(on_s3, "resubmitted"):
                    pass
            else:
                with output_lock(on_s3, "resubmitted"):
                    assert json.loads(storage.read_bytes(loc, LOCK_FILE) or b"{}")["command"] == "resubmitted"
    finally:
        live.kill()
