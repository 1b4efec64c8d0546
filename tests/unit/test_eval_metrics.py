"""Evaluation metrics from prediction rows: hand-computed cases."""

from __future__ import annotations

from typing import Any

import pytest

from scotd.evaluation.metrics import bootstrap_ci, compute_metrics
from scotd.parsing import parse_label_only


def _rows(qid: str, gold: str | None, greedy: str | None, sampled: list[str | None]) -> list[dict[str, Any]]:
    out = [{"example_id": qid, "gold": gold, "mode": "greedy", "sample_index": 0, "pred_label": greedy}]
    out += [
        {"example_id": qid, "gold": gold, "mode": "sampled", "sample_index": i, "pred_label": p}
        for i, p in enumerate(sampled)
    ]
    return out


def test_hand_computed_metrics() -> None:
    rows = (
        _rows("q1", "a", "a", ["b", "a", "a"])  # greedy right; maj@1 wrong, maj@3 right
        + _rows("q2", "b", None, ["b", "c", "c"])  # greedy unparseable; maj@1 right, maj@3 wrong
        + _rows("q3", "c", "a", [None, None, None])  # all wrong; all unparseable samples
        + _rows("q4", None, "a", ["a", "a", "a"])  # unlabeled: not scored
    )
    m = compute_metrics(rows, ks=[1, 3, 5])
    assert m["questions"] == 4 and m["labeled_questions"] == 3
    assert m["greedy"]["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["greedy"]["unparseable_rate"] == pytest.approx(1 / 3, abs=1e-4)
    s = m["sampled"]
    assert s["k_drawn"] == 3 and set(s["maj_at_k"]) == {"1", "3"}
    assert s["maj_at_k"]["1"]["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["maj_at_k"]["3"]["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["any_correct"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["single_sample_accuracy"] == pytest.approx(3 / 9, abs=1e-4)
    assert s["unparseable_rate"] == pytest.approx(3 / 9, abs=1e-4)
    lo, hi = s["any_correct"]["ci95"]
    assert 0 <= lo <= 2 / 3 <= hi <= 1


def test_bootstrap_is_seeded_and_sane() -> None:
    values = [1.0] * 70 + [0.0] * 30
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    lo, hi = bootstrap_ci(values)
    assert 0.58 < lo < 0.7 < hi < 0.8
    assert bootstrap_ci([1.0, 1.0]) == [1.0, 1.0]


def test_label_only_reads_a_bare_answer() -> None:
    choices = (("a", "x"), ("b", "y"))
    assert parse_label_only("(b)\n\nQ: more", choices).label == "b"
    assert parse_label_only("So the answer is: (a)", choices).label == "a"
    assert parse_label_only("y", choices).label == "b"
    assert parse_label_only("nothing", choices).label is None
