"""`scotd data` as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _scotd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scotd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_data_show_prints_student_and_teacher_prompts() -> None:
    out = _scotd("data", "show", "csqa", "--split", "validation", "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("--- ") == 2
    assert "Answer Choices:\n(a) " in out.stdout and out.stdout.rstrip().endswith("A:")
    teacher = _scotd("data", "show", "openbookqa", "--limit", "1", "--prompt", "teacher")
    assert teacher.returncode == 0, teacher.stderr
    assert teacher.stdout.count("So the answer is: (") == 4  # the 4 OBQA demonstrations
    js = _scotd("data", "show", "synthetic", "--split", "test", "--limit", "3", "--json")
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert len(rows) == 3 and all(r["task"] == "synthetic" and len(r["choice_texts"]) == 5 for r in rows)


def test_data_stats_counts_splits_and_reports_missing(tmp_path: Path) -> None:
    out = _scotd("data", "stats", "openbookqa")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # the in-repo slice (tests/fixtures/data): 100 rows of OBQA train, no validation split
    assert any(line.split()[:3] == ["train", "100", "0"] for line in lines)
    assert any(
        line.startswith("validation") and "unavailable" in line and "dev.jsonl" in line for line in lines
    )
    bad = tmp_path / "csqa"
    bad.mkdir()
    (bad / "train_rand_split.jsonl").write_text('{"id": "x"}\nnot json\n')
    out = _scotd("data", "stats", "csqa", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    train = next(line for line in out.stdout.splitlines() if line.startswith("train"))
    assert train.split()[1:3] == ["0", "2"] and "bad_json=1" in train and "missing_question=1" in train
    assert "train_rand_split.jsonl:2: bad_json" in out.stdout


def test_data_errors_are_clear() -> None:
    out = _scotd("data", "show", "nope")
    assert out.returncode == 2 and "unknown task 'nope'" in out.stderr
    out = _scotd("data", "show", "quarel", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert out.returncode == 2 and "quarel-v1-train.jsonl" in out.stderr and "Traceback" not in out.stderr
