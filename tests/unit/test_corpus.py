"""Corpus filters on hand-made rows: what is kept, what is dropped and why."""

from __future__ import annotations

from typing import Any

from scotd.selection import CorpusSpec, balanced_epoch, build, distinct_n


def _row(
    q: str, i: int, rationale: str | None, pred: str | None, gold: str | None = "a", error: str | None = None
) -> dict[str, Any]:
    return {
        "example_id": q, "task": "t", "split": "train", "question": f"{q}?", "choice_labels": ["a", "b"],
        "choice_texts": ["x", "y"], "gold": gold, "sample_index": i if error is None else None,
        "rationale": rationale, "pred_label": pred, "correct": None if gold is None or error else pred == gold,
        "request_key": f"k-{q}", "error": error,
    }  # fmt: skip


ROWS = [
    _row("q1", 0, "it is x because x", "a"),
    _row("q1", 1, "It is x because x.", "a"),  # exact duplicate after normalisation
    _row("q1", 2, "y seems right here", "b"),  # wrong
    _row("q1", 3, "no idea", None),  # unparseable
    _row("q1", 4, "x is the only sensible one here", "a"),
    _row("q2", 0, "y is wrong so x", "a"),
    _row("q2", 1, None, None, error="transient: HTTP 503"),
    _row("q3", 0, "surely y", "b"),  # q3: teacher never right
]


def test_balanced_keeps_correct_deduplicated_rationales() -> None:
    rows, stats = build(ROWS, CorpusSpec(mode="balanced", dedup="exact"))
    assert [(r["example_id"], r["sample_index"]) for r in rows] == [("q1", 0), ("q1", 4), ("q2", 0)]
    assert all(r["label"] == "a" for r in rows)
    assert stats.dropped == {"duplicate_exact": 1, "request_error": 1, "unparseable": 1, "wrong_label": 2}
    assert (stats.samples_in, stats.questions_in, stats.questions_kept) == (7, 3, 2)
    assert stats.teacher_accuracy == round(4 / 7, 4)  # unparseable counts as wrong
    assert stats.unique_rationales_per_question == 1.5


def test_all_mode_trains_on_the_teachers_labels() -> None:
    rows, stats = build(ROWS, CorpusSpec(mode="all", dedup="none"))
    assert sorted((r["example_id"], r["label"]) for r in rows) == [
        ("q1", "a"), ("q1", "a"), ("q1", "a"), ("q1", "b"), ("q2", "a"), ("q3", "b")
    ]  # fmt: skip
    assert "wrong_label" not in stats.dropped


def test_per_example_counts_samples_before_filtering() -> None:
    rows, stats = build(ROWS, CorpusSpec(mode="correct", dedup="none", per_example=1))
    assert [(r["example_id"], r["sample_index"]) for r in rows] == [("q1", 0), ("q2", 0)]
    assert stats.dropped["beyond_per_example"] == 4


def test_near_duplicates() -> None:
    near = [
        _row("q", 0, "the cat sat on the mat today", "a"),
        _row("q", 1, "the cat sat on the mat today indeed", "a"),
    ]
    assert len(build(near, CorpusSpec(mode="correct", dedup="near", near_threshold=0.6))[0]) == 1
    assert len(build(near, CorpusSpec(mode="correct", dedup="exact"))[0]) == 2


def test_label_only_and_greedy_variants() -> None:
    label_only, _ = build(ROWS, CorpusSpec(mode="correct", variant="label-only"))
    assert [(r["example_id"], r["rationale"], r["label"]) for r in label_only] == [
        ("q1", "", "a"),
        ("q2", "", "a"),
    ]
    fewshot, _ = build(ROWS, CorpusSpec(mode="all", variant="label-only"))
    assert [(r["example_id"], r["label"]) for r in fewshot] == [
        ("q1", "a"),
        ("q2", "a"),
        ("q3", "b"),
    ]  # majority
    greedy, _ = build(ROWS, CorpusSpec(mode="all", variant="greedy"))
    assert [(r["example_id"], r["sample_index"]) for r in greedy] == [("q1", 0), ("q2", 0), ("q3", 0)]


def test_balanced_epochs_draw_one_per_question_and_vary() -> None:
    rows, _ = build(ROWS, CorpusSpec(mode="balanced", dedup="none"))
    epochs = [balanced_epoch(rows, e, seed=0) for e in range(8)]
    assert all(len({r["example_id"] for r in ep}) == len(ep) == 2 for ep in epochs)
    assert len({ep[0]["sample_index"] for ep in epochs}) > 1  # q1's draw changes across epochs
    assert balanced_epoch(rows, 3, seed=0) == balanced_epoch(rows, 3, seed=0)


def test_distinct_2() -> None:
    assert distinct_n(["a b a b"]) == 2 / 3
    assert distinct_n([]) == 0.0
