"""`ray job submit` / `ray job logs` against a test head, as a user runs them; every wait bounded."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers.ray_head import RAY_BIN, LocalHead, head_env

REPO = Path(__file__).resolve().parents[2]
# Never upload these (the working-dir upload limit is 500 MiB; .venv alone is GBs). Ray also
# honours .gitignore; this list keeps the upload small even without it.
EXCLUDES = [".git", ".venv", "outputs", ".mypy_cache", ".pytest_cache", ".ruff_cache", "*.egg-info"]


def ray_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAY_BIN, *args], env=head_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def submit(head: LocalHead, script: str, *args: str) -> str:
    """``ray job submit --working-dir <repo> --no-wait -- python <script> <args>``; the job id."""
    assert head.dashboard_url, "the head was started without the job API"
    job_id = f"scotd-test-{uuid.uuid4().hex[:8]}"
    out = ray_cli(
        "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--no-wait",
        "--", "python", script, *args,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return job_id


def wait(head: LocalHead, job_id: str, within_s: float) -> tuple[str, float]:
    """Poll until the job is terminal; returns (status, seconds since the call)."""
    from ray.job_submission import JobSubmissionClient

    # The job SDK prefers $RAY_ADDRESS (set by the session's `ray_address` fixture) over its own
    # argument: hide it while the client is made, or it may talk to the wrong endpoint.
    saved = os.environ.pop("RAY_ADDRESS", None)
    try:
        client = JobSubmissionClient(head.dashboard_url)
    finally:
        if saved is not None:
            os.environ["RAY_ADDRESS"] = saved
    start = time.monotonic()
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value), time.monotonic() - start
        if time.monotonic() - start > within_s:
            client.stop_job(job_id)
            return f"still {status.value} after {within_s:.0f} s", time.monotonic() - start
        time.sleep(1)


def logs(head: LocalHead, job_id: str) -> str:
    assert head.dashboard_url
    out = ray_cli("job", "logs", "--address", head.dashboard_url, job_id)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
