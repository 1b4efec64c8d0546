"""A cost cap on a model with no known price fails before any request reaches the teacher.

The case from issue 13: ``--budget.max-cost-usd 0.0000001`` on an unpriced model used to run to
the end uncapped (60 of 60 completions paid). ``scotd sample`` runs as a user types it, against a
real ``scotd teacher-sim`` on 127.0.0.1, whose ``/stats`` proves nothing was requested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = pytest.mark.timeout(120)


def _sample(sim: TeacherSimProcess, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "scotd", "sample", "--limit", "2", "--n", "30", "--progress", "false"]
    cmd += ["--teacher.base-url", sim.base_url, "--teacher.model", "my-own-model", "--out", str(out), *extra]
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)


def test_an_unpriced_cap_fails_before_any_request(tmp_path: Path) -> None:
    with TeacherSimProcess(["--latency-base-ms", "0", "--latency-per-token-ms", "0"]) as sim:
        done = _sample(sim, tmp_path / "capped", "--budget.max-cost-usd", "0.0000001")
        half = _sample(sim, tmp_path / "half", "--budget.prompt-price-per-1k", "0.01")
        stats = sim.stats()
    assert done.returncode == 2, done.stderr
    assert "budget.max_cost_usd is set but no price is known for teacher.model 'my-own-model'" in done.stderr
    assert "budget.prompt_price_per_1k" in done.stderr and "Traceback" not in done.stderr
    assert half.returncode == 2 and "budget.completion_price_per_1k" in half.stderr, half.stderr
    assert stats["requests"] == 0 and stats["paid_requests"] == 0, stats
    assert not (tmp_path / "capped").exists() and not (tmp_path / "half").exists()
