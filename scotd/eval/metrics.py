"""Metrics from predictions alone (pure): greedy accuracy, maj@K, any-correct, unparseable rate, CIs.

Everything is computed from the ``predictions.parquet`` rows, so ``metrics.json`` can always be
recomputed — and is, bit for bit, by ``scotd eval --recompute DIR``. Intervals are 95% bootstrap
percentiles over questions (seeded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from scotd.voting import (
    ADAPTIVE_CONFIDENCE,
    PAPER_KS,
    adaptive_vote,
    any_correct_per_question,
    correct_at_k,
    unparseable_rate,
    vote,
)

BOOTSTRAP_SAMPLES = 1000


def bootstrap_ci(correct: Sequence[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> list[float]:
    """95% percentile interval of the mean of ``correct`` (one value per question)."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]  # a list: identical after a JSON round trip


def _acc(correct: Sequence[float], seed: int) -> dict[str, Any]:
    return {
        "accuracy": round(float(np.mean(correct)), 4) if len(correct) else 0.0,
        "ci95": bootstrap_ci(correct, seed),
    }


def group_samples(rows: Iterable[dict[str, Any]], mode: str) -> dict[str, list[dict[str, Any]]]:
    """Rows of one mode by question, each list in sample order."""
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["mode"] == mode:
            by_q[r["example_id"]].append(r)
    for group in by_q.values():
        group.sort(key=lambda r: r["sample_index"])
    return dict(sorted(by_q.items()))


def compute_metrics(
    rows: list[dict[str, Any]], ks: Sequence[int] = PAPER_KS, seed: int = 0
) -> dict[str, Any]:
    """Metrics of the labeled questions in ``rows`` (prediction rows, any order)."""
    out: dict[str, Any] = {}
    labeled = [r for r in rows if r.get("gold") is not None]
    out["questions"] = len({r["example_id"] for r in rows})
    out["labeled_questions"] = len({r["example_id"] for r in labeled})
    greedy = group_samples(labeled, "greedy")
    if greedy:
        first = [[g[0]["pred_label"]] for g in greedy.values()]
        golds = [g[0]["gold"] for g in greedy.values()]
        out["greedy"] = {
            **_acc(correct_at_k(first, golds, ks=(1,))[1], seed),
            "unparseable_rate": round(unparseable_rate(first), 4),
        }
    sampled = group_samples(labeled, "sampled")
    if sampled:
        k_drawn = min(len(g) for g in sampled.values())
        labels = [[r["pred_label"] for r in g] for g in sampled.values()]
        golds = [g[0]["gold"] for g in sampled.values()]
        curve = correct_at_k(labels, golds, ks={*ks, k_drawn})
        out["sampled"] = {
            "k_drawn": k_drawn,
            "maj_at_k": {str(k): _acc(correct, seed) for k, correct in curve.items()},
            "any_correct": _acc(any_correct_per_question(labels, golds), seed),
            "single_sample_accuracy": round(
                float(np.mean([x == gold for s, gold in zip(labels, golds, strict=True) for x in s])), 4
            ),
            "unparseable_rate": round(unparseable_rate(labels), 4),
            "mean_vote_share": round(float(np.mean([vote(s).share for s in labels])), 4),
        }
        out["adaptive"] = adaptive_metrics(labels, golds, k_drawn, seed)
    return out


ADAPTIVE_LEVELS = (0.8, 0.9, 0.95, 0.99)  # confidence levels of the adaptive curve


def adaptive_metrics(
    labels: Sequence[Sequence[str | None]], golds: Sequence[str], max_votes: int, seed: int = 0
) -> dict[str, Any]:
    """Adaptive self-consistency replayed on the drawn votes (in their order): accuracy and the
    votes it spent on average, at ``ADAPTIVE_CONFIDENCE`` (the headline) and each of ``ADAPTIVE_LEVELS``."""
    curve = []
    for level in ADAPTIVE_LEVELS:
        runs = [adaptive_vote(s, max_votes, level) for s in labels]
        correct = [r.vote.label == g for r, g in zip(runs, golds, strict=True)]
        curve.append(
            {
                "confidence": level,
                **_acc(correct, seed),
                "mean_votes": round(float(np.mean([r.spent for r in runs])), 2),
            }
        )
    main = next(p for p in curve if p["confidence"] == ADAPTIVE_CONFIDENCE)
    return {
        "max_votes": max_votes,
        **main,
        "votes_fraction": round(main["mean_votes"] / max_votes, 4),
        "curve": curve,
    }


def per_question(rows: Iterable[dict[str, Any]], metric: str) -> dict[str, bool]:
    """Whether each labeled question is right under ``metric`` (``greedy`` or ``maj@K``)."""
    labeled = [r for r in rows if r.get("gold") is not None]
    if metric == "greedy":
        return {q: g[0]["pred_label"] == g[0]["gold"] for q, g in group_samples(labeled, "greedy").items()}
    k = int(metric.removeprefix("maj@"))
    sampled = group_samples(labeled, "sampled")
    return {q: vote([r["pred_label"] for r in g[:k]]).label == g[0]["gold"] for q, g in sampled.items()}


def paired_difference(
    a: Mapping[str, bool], b: Mapping[str, bool], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, Any]:
    """``a`` minus ``b`` on the questions both answered: the difference in points, its 95% paired
    bootstrap interval (questions resampled jointly), and McNemar's exact two-sided p-value."""
    shared = sorted(set(a) & set(b))
    x = np.asarray([a[q] for q in shared], dtype=float)
    y = np.asarray([b[q] for q in shared], dtype=float)
    if not shared:
        return {"questions": 0, "diff_points": 0.0, "diff_ci95": [0.0, 0.0], "p_value": 1.0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(shared), size=(samples, len(shared)))
    diffs = (x[idx] - y[idx]).mean(axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    return {
        "questions": len(shared),
        "diff_points": round(100 * float((x - y).mean()), 1),
        "diff_ci95": [round(100 * float(lo), 1), round(100 * float(hi), 1)],
        "p_value": round(mcnemar_exact(only_a, only_b), 4),
        "discordant": [only_a, only_b],
    }


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: the binomial(n, 1/2) tail of the discordant pairs' split."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)
