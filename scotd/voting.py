"""Self-consistency: majority vote over parsed labels, and accuracy for every vote count K.

Tie-break (deterministic, documented): among labels with the most votes, the one whose first
vote came earliest in sample order wins — so a vote over one sample is that sample's answer,
and re-running on the same samples always gives the same winner. Unparseable samples (``None``)
never vote; they are counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAPER_KS = (1, 3, 5, 10, 20, 30)


@dataclass(frozen=True)
class Vote:
    """Outcome of one vote.

    ``share`` is the winner's votes over ALL samples drawn (unparseable ones included), an honest
    confidence; ``counts`` is ordered by votes, then by first appearance.
    """

    label: str | None
    counts: dict[str, int] = field(default_factory=dict)
    share: float = 0.0
    n_samples: int = 0
    n_unparseable: int = 0


def vote(labels: Sequence[str | None]) -> Vote:
    """Majority vote over ``labels`` (``None`` = unparseable)."""
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label is None:
            continue
        counts[label] = counts.get(label, 0) + 1
        first_seen.setdefault(label, i)
    n_unparseable = sum(1 for label in labels if label is None)
    if not counts:
        return Vote(None, {}, 0.0, len(labels), n_unparseable)
    ordered = sorted(counts, key=lambda lab: (-counts[lab], first_seen[lab]))
    winner = ordered[0]
    return Vote(
        label=winner,
        counts={lab: counts[lab] for lab in ordered},
        share=counts[winner] / len(labels),
        n_samples=len(labels),
        n_unparseable=n_unparseable,
    )


def _scored(
    samples: Sequence[Sequence[str | None]], golds: Sequence[str | None]
) -> Iterable[tuple[Sequence[str | None], str]]:
    if len(samples) != len(golds):
        raise ValueError(f"{len(samples)} sample lists but {len(golds)} gold labels")
    return ((s, g) for s, g in zip(samples, golds, strict=True) if g is not None)


def correct_at_k(
    samples: Sequence[Sequence[str | None]], golds: Sequence[str | None], ks: Iterable[int] = PAPER_KS
) -> dict[int, list[bool]]:
    """Per question with gold, whether the vote over its FIRST k samples is right, for every
    k ≤ the fewest drawn (the per-question vector behind maj@k and its bootstrap interval)."""
    pairs = list(_scored(samples, golds))
    if not pairs:
        return {}
    n_min = min(len(s) for s, _ in pairs)
    return {k: [vote(s[:k]).label == g for s, g in pairs] for k in sorted(set(ks)) if 1 <= k <= n_min}


def maj_at_k(
    samples: Sequence[Sequence[str | None]], golds: Sequence[str | None], ks: Iterable[int] = PAPER_KS
) -> dict[int, float]:
    """Accuracy of the vote over each question's FIRST k samples, for every k ≤ the fewest drawn.

    Questions without gold are skipped. One set of N samples gives maj@k for all k ≤ N.
    """
    return {k: sum(c) / len(c) for k, c in correct_at_k(samples, golds, ks).items()}


def any_correct_per_question(
    samples: Sequence[Sequence[str | None]], golds: Sequence[str | None]
) -> list[bool]:
    """Per question with gold, whether at least one of its samples is right."""
    return [g in s for s, g in _scored(samples, golds)]


def any_correct(samples: Sequence[Sequence[str | None]], golds: Sequence[str | None]) -> float:
    """Upper bound of voting: the share of questions where at least one sample is right."""
    hits = any_correct_per_question(samples, golds)
    return sum(hits) / len(hits) if hits else 0.0


def unparseable_rate(samples: Sequence[Sequence[str | None]]) -> float:
    total = sum(len(s) for s in samples)
    return sum(x is None for s in samples for x in s) / total if total else 0.0


# ── Adaptive self-consistency: draw votes one at a time, stop once the answer is settled ─────────

ADAPTIVE_CONFIDENCE = 0.95


def leader_confidence(counts: Sequence[int]) -> float:
    """P(the leading answer is the more likely of the top two) under a uniform prior: with ``a``
    votes for the leader and ``b`` for the runner-up, P(X > 1/2) for X ~ Beta(a + 1, b + 1), which
    for whole counts is P(Binomial(a + b + 1, 1/2) <= a) (the Beta stopping rule of adaptive
    consistency, Aggarwal et al. 2023)."""
    top = [*sorted(counts, reverse=True)[:2], 0, 0]
    a, b = top[0], top[1]
    n = a + b + 1
    return sum(math.comb(n, i) for i in range(a + 1)) / 2**n


def settled(
    counts: Sequence[int], drawn: int, max_votes: int, confidence: float = ADAPTIVE_CONFIDENCE
) -> bool:
    """Whether to stop drawing after ``drawn`` votes: the budget is spent, the leader can no longer
    be overtaken by the votes left, or it leads with ``confidence`` (``leader_confidence``)."""
    if drawn >= max_votes:
        return True
    top = [*sorted(counts, reverse=True)[:2], 0, 0]
    if top[0] > top[1] + (max_votes - drawn):
        return True
    return top[0] > 0 and leader_confidence(counts) >= confidence


@dataclass(frozen=True)
class AdaptiveVote:
    vote: Vote
    spent: int  # votes drawn before stopping (unparseable ones included)


def adaptive_vote(
    labels: Sequence[str | None], max_votes: int, confidence: float = ADAPTIVE_CONFIDENCE
) -> AdaptiveVote:
    """Replay ``labels`` in order, one vote at a time, and vote over the prefix drawn when ``settled``."""
    counts: dict[str, int] = {}
    drawn = 0
    for label in labels[:max_votes]:
        drawn += 1
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
        if settled(list(counts.values()), drawn, max_votes, confidence):
            break
    return AdaptiveVote(vote(labels[:drawn]), drawn)
