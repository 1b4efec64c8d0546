"""Hostile task rows become counted row errors naming file:line, never a crash of the loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scotd.cli import main
from scotd.tasks import load_task
from scotd.tasks.validate import MAX_DETAIL_CHARS, TOO_DEEP

GOOD = {"id": "q1", "question": "Where do you keep milk?", "choices": ["fridge", "oven"], "answer": "a"}


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pathologically_nested_rows_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            json.dumps(GOOD),
            '{"id": "q2", "question": "x", "choices": ' + _nested(100_000) + "}",  # RecursionError
            '{"id": "q3", "question": "x", "choices": [' + _nested(900) + ', "b"]}',  # parses, then recursion
            '{"id": "q4", "question": "x", "choices": ["a", "b"], "answer": ' + _nested(50) + "}",
            json.dumps({**GOOD, "id": "q5"}),
        ],
    )
    result = load_task(f"jsonl:{path}", "train")
    assert [e.id for e in result.examples] == ["q1", "q5"]
    assert [(e.line, e.reason) for e in result.rejected] == [(2, TOO_DEEP), (3, TOO_DEEP), (4, TOO_DEEP)]
    assert all(e.source == str(path) for e in result.rejected)


def test_huge_integers_and_huge_values_are_bounded_row_errors(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            '{"id": "big", "question": "x", "choices": ["a", "b"], "answer": ' + "9" * 5000 + "}",
            json.dumps({"id": "wide", "question": "x", "choices": ["a", {"blob": "y" * 100_000}]}),
            json.dumps(GOOD),
        ],
    )
    result = load_task(f"jsonl:{path}", "train")
    assert [e.id for e in result.examples] == ["q1"]
    assert [(e.line, e.reason) for e in result.rejected] == [(1, "bad_json"), (2, "bad_choices")]
    assert all(len(e.detail) <= MAX_DETAIL_CHARS for e in result.rejected)


def test_data_stats_reports_a_nested_row_instead_of_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [json.dumps(GOOD), '{"id": "q2", "choices": ' + _nested(100_000) + "}"])
    assert main(["data", "stats", f"jsonl:{path}", "--errors", "5"]) == 0
    out = capsys.readouterr().out
    assert f"{path}:2: {TOO_DEEP}" in out
