"""`ray job submit --working-dir <repo> -- python jobs/pipeline.py ...` on a real local Ray cluster.

What a user does on a cluster, shrunk: a head with the job API (``ray start --head``, 127.0.0.1
only, 8 logical CPUs), the repo uploaded as the job's working dir, the pipeline at a tiny size,
then the outputs; and a job with a bad config, which must fail in seconds naming the bad key.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.ray_head import RAY_BIN, LocalHead, head_env, local_head

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
# Never upload these (the working-dir upload limit is 500 MiB; .venv alone is GBs). Ray also
# honours .gitignore; this list keeps the upload small even without it.
EXCLUDES = [".git", ".venv", "outputs", ".mypy_cache", ".pytest_cache", ".ruff_cache", "*.egg-info"]
SUCCESS_WITHIN_S = 300
FAIL_WITHIN_S = 60

# The demo pipeline at a tiny size: one student (no N ablation, no label-only), 20 steps, 3 votes.
SMALL = {
    "task": "synthetic",
    "train_questions": 24,
    "eval_questions": 12,
    "n": 4,
    "n_ablation": [],
    "label_only": False,
    "progress": False,
    "distill": {
        "max_steps": 20,
        "warmup_steps": 2,
        "batch_size": 8,
        "num_workers": 1,
        "checkpoint_every_steps": 20,
        "eval_every_steps": 20,
        "log_every_steps": 10,
    },
    "eval": {"votes": 3, "ks": [1, 3], "engine": "hf", "max_new_tokens": 48},
}


@pytest.fixture(scope="module")
def head() -> Iterator[LocalHead]:
    with local_head(num_cpus=8, dashboard=True) as h:
        yield h


def _ray(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAY_BIN, *args], env=head_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def _submit(head: LocalHead, *entrypoint_args: str) -> str:
    assert head.dashboard_url
    job_id = f"scotd-test-{uuid.uuid4().hex[:8]}"
    out = _ray(
        "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--no-wait",
        "--", "python", "jobs/pipeline.py", *entrypoint_args,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return job_id


def _wait(head: LocalHead, job_id: str, within_s: float) -> tuple[str, float]:
    """Poll until the job is terminal; returns (status, seconds since the call)."""
    from ray.job_submission import JobSubmissionClient

    # The job SDK prefers $RAY_ADDRESS (set by the session's `ray_address` fixture when an earlier
    # test used it) over its own argument: hide it, or the client talks to the wrong cluster.
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


def _logs(head: LocalHead, job_id: str) -> str:
    assert head.dashboard_url
    out = _ray("job", "logs", "--address", head.dashboard_url, job_id)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_pipeline_job_succeeds_and_writes_its_outputs(head: LocalHead, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "run"
    # A local head shares this machine's disk, so plain paths work; a real cluster takes s3:// URIs.
    job_id = _submit(head, "--config", str(config), "--out", str(out))
    status, took = _wait(head, job_id, SUCCESS_WITHIN_S)
    logs = _logs(head, job_id)
    assert status == "SUCCEEDED", f"{status} after {took:.0f} s; job logs:\n{logs[-6000:]}"
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["train_questions"] == 24
    assert set(results["students"]) == {"scotd"}
    export = Path(results["students"]["scotd"]["train"]["export_dir"])
    assert (export / "config.json").is_file(), "the student's HF export, ready for cluster/serve.yaml"
    assert (out / "report.md").is_file() and (out / "report.md").read_text().strip()
    assert (out / "config.yaml").is_file(), "the resolved config is written next to the outputs"
    assert str(out) in logs, "the driver's output reaches `ray job logs`"


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"distill": {"lrr": 0.1}}, ["distill.lrr", "did you mean 'lr'"]),
        ({"trian_questions": 24}, ["trian_questions", "did you mean 'train_questions'"]),
    ],
    ids=["distill.lrr", "trian_questions"],
)
def test_bad_config_fails_fast_naming_the_key(
    head: LocalHead, tmp_path: Path, bad: dict[str, object], named: list[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**SMALL, **bad}))
    out = tmp_path / "run"
    job_id = _submit(head, "--config", str(config), "--out", str(out))
    status, took = _wait(head, job_id, FAIL_WITHIN_S)
    logs = _logs(head, job_id)
    assert status == "FAILED", f"{status}; job logs:\n{logs[-3000:]}"
    assert took < FAIL_WITHIN_S
    for text in named:
        assert text in logs, f"{text!r} not in the job logs:\n{logs[-3000:]}"
    assert not (out / "teacher").exists(), "no teacher call before the config is valid"
