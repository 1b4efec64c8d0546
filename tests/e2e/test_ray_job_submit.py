"""`ray job submit --working-dir <repo> -- python jobs/pipeline.py ...` with a bad config, on the
session's real local Ray head (127.0.0.1 only, 8 logical CPUs, with the job API): the job must fail
in seconds naming the bad key, before any teacher call. (A job that succeeds — the repo uploaded as
the working dir, the whole method run, outputs written, the driver's output in `ray job logs` — is
the first run of tests/e2e/test_pipeline_demo.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers.ray_head import LocalHead
from tests.helpers.ray_jobs import logs, submit, wait

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

FAIL_WITHIN_S = 60
SMALL = {"task": "synthetic", "train_questions": 24, "eval_questions": 12, "n": 4, "progress": False}


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"distill": {"lrr": 0.1}}, ["distill.lrr", "did you mean 'lr'"]),
        ({"trian_questions": 24}, ["trian_questions", "did you mean 'train_questions'"]),
    ],
    ids=["distill.lrr", "trian_questions"],
)
def test_bad_config_fails_fast_naming_the_key(
    ray_head: LocalHead, tmp_path: Path, bad: dict[str, object], named: list[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**SMALL, **bad}))
    out = tmp_path / "run"
    job_id = submit(ray_head, "jobs/pipeline.py", "--config", str(config), "--out", str(out))
    status, took = wait(ray_head, job_id, FAIL_WITHIN_S)
    text = logs(ray_head, job_id)
    assert status == "FAILED", f"{status}; job logs:\n{text[-3000:]}"
    assert took < FAIL_WITHIN_S
    for part in named:
        assert part in text, f"{part!r} not in the job logs:\n{text[-3000:]}"
    assert not (out / "teacher").exists(), "no teacher call before the config is valid"
