"""`scotd data fetch` writes the official layout the loaders read, and fails fast offline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scotd.tasks import load_task, task_spec
from scotd.tasks.fetch import fetch_task, official_row
from scotd.tasks.schema import Example


@pytest.mark.parametrize("task", ["csqa", "openbookqa"])
def test_official_rows_round_trip_through_the_loader(task: str, data_dir: Path, tmp_path: Path) -> None:
    spec = task_spec(task)
    for split in ("train", "test"):
        if split not in spec.files or not (data_dir / spec.folder / spec.files[split]).is_file():
            continue
        examples = load_task(task, split, data_dir=data_dir).examples
        out = tmp_path / spec.folder / spec.files[split]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(official_row(ex, spec)) + "\n" for ex in examples))
        assert load_task(task, split, data_dir=tmp_path).examples == examples


def test_quarel_rows_round_trip(tmp_path: Path) -> None:
    spec = task_spec("quarel")
    examples = [
        Example("q1", "quarel", "validation", "Which is faster?", (("A", "a car"), ("B", "a snail")), "A"),
        Example("q2", "quarel", "validation", "Which rolls further?", (("A", "glass"), ("B", "carpet")), "B"),
    ]
    out = tmp_path / spec.folder / spec.files["validation"]
    out.parent.mkdir(parents=True)
    out.write_text("".join(json.dumps(official_row(ex, spec)) + "\n" for ex in examples))
    assert load_task("quarel", "validation", data_dir=tmp_path).examples == examples


def test_splits_on_disk_are_kept_without_the_network(data_dir: Path, tmp_path: Path) -> None:
    spec = task_spec("csqa")
    fetched = fetch_task(spec, data_dir)  # every split is there: no probe, nothing written
    assert [(f.split, f.rows, f.kept) for f in fetched] == [
        ("train", 200, True),
        ("validation", 100, True),
        ("test", 20, True),
    ]


def test_fetch_offline_fails_fast_and_writes_nothing(tmp_path: Path) -> None:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "scotd", "data", "fetch", "openbookqa", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - start < 30
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "allenai/openbookqa" in out.stderr and "Nothing was written" in out.stderr
    assert "dev.jsonl" in out.stderr  # what to copy by hand instead
    assert not (tmp_path / "d").exists()
