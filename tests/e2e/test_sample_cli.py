"""`scotd sample` / `scotd corpus` / `scotd pipeline` as a user types them (subprocesses, real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def _scotd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scotd", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
    )


def test_sample_then_corpus(ray_address: str, tmp_path: Path) -> None:
    with TeacherSimProcess(["--latency-base-ms", "10"]) as sim:
        out = _scotd(
            "sample",
            "--limit",
            "6",
            "--n",
            "4",
            "--out",
            str(tmp_path / "s"),
            "--teacher.base-url",
            sim.base_url,
            "--progress",
            "false",
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert sim.stats()["paid_requests"] == 6
    line = json.loads(out.stdout.splitlines()[0])
    assert line["samples"] == 24 and line["complete"] is True
    corpus = _scotd(
        "corpus", "--input", str(tmp_path / "s"), "--out", str(tmp_path / "c"), "--mode", "correct"
    )
    assert corpus.returncode == 0, corpus.stderr
    assert "training rows" in corpus.stdout and "dropped" in corpus.stdout
    stats = json.loads((tmp_path / "c" / "corpus_stats.json").read_text())
    assert stats["samples_in"] == 24 and stats["mode"] == "correct"


def test_bad_config_fails_before_any_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: synthetic\nteacher:\n  base_urll: http://127.0.0.1:9/v1\n")
    with TeacherSimProcess() as sim:
        out = _scotd("sample", "--config", str(bad), "--out", str(tmp_path / "x"))
        assert sim.stats()["requests"] == 0
    assert out.returncode == 2
    assert "unknown key 'teacher.base_urll'" in out.stderr and "did you mean 'base_url'" in out.stderr
    dead = _scotd(
        "sample", "--limit", "2", "--teacher.base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "y")
    )
    assert dead.returncode == 3 and "cannot reach the teacher" in dead.stderr


def test_pipeline_dry_run_prints_the_cost(tmp_path: Path) -> None:
    out = _scotd("pipeline", "--dry-run", "true", "--train-questions", "50", "--out", str(tmp_path / "p"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dry run: 50 teacher requests (0 already paid for), 1500 samples" in out.stdout
    assert not (tmp_path / "p" / "teacher" / "ledger").exists()
