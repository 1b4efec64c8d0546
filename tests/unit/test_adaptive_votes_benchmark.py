"""The adaptive-voting summary counts what the grids' results hold: votes spent, accuracy lost
against maj@K and whether the adaptive accuracy stays inside maj@K's interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.adaptive_votes import main, rows


def _student(maj: float, points: list[tuple[float, float, float]]) -> dict[str, object]:
    curve = [{"confidence": c, "accuracy": a, "mean_votes": v} for c, a, v in points]
    return {
        "label": "s",
        "eval": {
            "sampled": {"maj_at_k": {"30": {"accuracy": maj, "ci95": [maj - 0.03, maj + 0.03]}}},
            "adaptive": {"max_votes": 30, "curve": curve},
        },
    }


def test_summary_of_adaptive_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid"
    grid.mkdir()
    students = {
        "a": _student(0.90, [(0.9, 0.89, 9.0), (0.95, 0.90, 12.0)]),
        "b": _student(0.80, [(0.9, 0.70, 15.0), (0.95, 0.79, 21.0)]),  # 0.9 falls out of the interval
        "greedy_only": {"label": "g", "eval": {"greedy": {"accuracy": 0.5}}},
    }
    (grid / "results.json").write_text(json.dumps({"students": students}))
    got = {(r["student"], r["confidence"]): r for r in rows(tmp_path)}
    assert len(got) == 4 and got[("grid/b", 0.9)]["inside_ci"] is False
    assert got[("grid/a", 0.95)]["votes_share"] == pytest.approx(0.4)
    assert got[("grid/b", 0.9)]["loss_points"] == pytest.approx(10.0)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 students" in out and "| 0.9 | 40% [30, 50] | +5.5 [+10.0] | 1/2 |" in out
    assert main([str(tmp_path / "none")]) == 1
