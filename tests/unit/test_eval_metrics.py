"""Evaluation metrics from prediction rows: hand-computed cases."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from scotd.eval.metrics import bootstrap_ci, compute_metrics
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


def _fixed_rows() -> list[dict[str, Any]]:
    """30 questions (3 unlabeled), 9 votes each (one with 6), greedy too; seeded, shuffled."""
    rng = random.Random(14)
    out: list[dict[str, Any]] = []
    for q in range(30):
        gold = None if q % 10 == 9 else "abcd"[q % 4]
        pool = [gold or "a", "a", "b", "c", "d", None, None]
        row = {"example_id": f"q{q:02d}", "gold": gold}
        out.append({**row, "mode": "greedy", "sample_index": 0, "pred_label": rng.choice(pool)})
        out += [
            {**row, "mode": "sampled", "sample_index": i, "pred_label": rng.choice(pool)}
            for i in range(6 if q == 5 else 9)
        ]
    rng.shuffle(out)
    return out


_GREEDY = {"accuracy": 0.4444, "ci95": [0.2593, 0.6296], "unparseable_rate": 0.1481}
_REST = {"single_sample_accuracy": 0.2417, "unparseable_rate": 0.2625, "mean_vote_share": 0.3601}


@pytest.mark.parametrize(
    ("ks", "seed", "curve", "any_correct"),
    [
        (
            (1, 3, 5, 10, 20, 30),
            0,
            {"1": (0.2963, [0.1472, 0.4454]), "3": (0.3333, [0.1481, 0.5185]),
             "5": (0.2963, [0.1481, 0.4815]), "6": (0.2963, [0.1481, 0.4815])},
            [0.7778, 1.0],
        ),
        (
            (2, 4),
            3,
            {"2": (0.3704, [0.1852, 0.5556]), "4": (0.3704, [0.1852, 0.5556]),
             "6": (0.2963, [0.1481, 0.4815])},
            [0.7407, 1.0],
        ),
    ],
)  # fmt: skip
def test_metrics_json_is_frozen(
    ks: tuple[int, ...], seed: int, curve: dict[str, tuple[float, list[float]]], any_correct: list[float]
) -> None:
    """metrics.json, byte for byte, as the evaluator wrote it before voting had one home."""
    expected = {
        "questions": 30,
        "labeled_questions": 27,
        "greedy": _GREEDY,
        "sampled": {
            "k_drawn": 6,
            "maj_at_k": {k: {"accuracy": acc, "ci95": ci} for k, (acc, ci) in curve.items()},
            "any_correct": {"accuracy": 0.8889, "ci95": any_correct},
            **_REST,
        },
    }
    got = compute_metrics(_fixed_rows(), ks, seed)
    got.pop("adaptive")  # added since (issue 15); everything that was there is unchanged
    assert json.dumps(got, indent=2) == json.dumps(expected, indent=2)


def test_paired_difference_on_a_known_case() -> None:
    from scotd.eval.metrics import mcnemar_exact, paired_difference

    # 10 shared questions: a right on 8, b right on 4; a alone right on 5, b alone right on 1.
    a = {f"q{i}": i < 8 for i in range(10)} | {"only_a": True}
    b = {f"q{i}": i in (0, 1, 2, 8) for i in range(10)}
    d = paired_difference(a, b, seed=0)
    assert d["questions"] == 10 and d["diff_points"] == 40.0 and d["discordant"] == [5, 1]
    # Exact McNemar: 2 * P(X <= 1), X ~ Binomial(6, 1/2) = 2 * 7/64.
    assert d["p_value"] == round(14 / 64, 4) == round(mcnemar_exact(5, 1), 4)
    lo, hi = d["diff_ci95"]
    assert lo < 40.0 < hi and lo > -20
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(10, 0) == 2 / 2**10
    same = paired_difference(a, a)
    assert same["diff_points"] == 0.0 and same["p_value"] == 1.0 and same["diff_ci95"] == [0.0, 0.0]
