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
