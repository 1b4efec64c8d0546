"""Voting: hand-computed majorities, the tie-break, unparseable handling, maj@K curves."""

from __future__ import annotations

import pytest

from scotd.voting import any_correct, any_correct_per_question, correct_at_k, maj_at_k, unparseable_rate, vote


def test_plain_majority_and_share() -> None:
    v = vote(["a", "b", "a", None, "c", "a"])
    assert v.label == "a"
    assert v.counts == {"a": 3, "b": 1, "c": 1}
    assert v.share == pytest.approx(3 / 6)
    assert (v.n_samples, v.n_unparseable) == (6, 1)


def test_tie_goes_to_the_label_seen_first() -> None:
    assert vote(["b", "a", "a", "b"]).label == "b"
    assert vote(["a", "b", "b", "a"]).label == "a"
    assert vote([None, "c", "d"]).label == "c"
    assert list(vote(["e", "d", "d", "e", "c"]).counts) == ["e", "d", "c"]


def test_one_sample_vote_is_that_sample() -> None:
    for label in ("a", "b", None):
        assert vote([label]).label == label


def test_all_unparseable_and_empty() -> None:
    v = vote([None, None, None])
    assert (v.label, v.counts, v.share, v.n_unparseable) == (None, {}, 0.0, 3)
    assert vote([]).label is None


def test_maj_at_k_hand_computed() -> None:
    samples = [
        ["a", "b", "b", "b", "a"],  # gold a: k1 right, k3 wrong (b,b), k5 wrong (3 b)
        ["c", "a", "a", "a", "a"],  # gold a: k1 wrong, k3 right, k5 right
        [None, None, "b", "b", "b"],  # gold b: k1 wrong (no vote), k3 right, k5 right
        ["d", "d", "d", "d", "d"],  # no gold: skipped
    ]
    golds = ["a", "a", "b", None]
    assert maj_at_k(samples, golds, ks=(1, 3, 5, 10)) == {
        1: pytest.approx(1 / 3),
        3: pytest.approx(2 / 3),
        5: pytest.approx(2 / 3),
    }
    # The per-question vectors that eval bootstraps (questions without gold dropped).
    assert correct_at_k(samples, golds, ks=(1, 3)) == {1: [True, False, False], 3: [False, True, True]}
    assert any_correct_per_question(samples, golds) == [True, True, True]
    assert any_correct(samples, golds) == 1.0
    assert unparseable_rate(samples) == pytest.approx(2 / 20)


def test_maj_at_k_stops_at_fewest_samples_and_checks_lengths() -> None:
    assert maj_at_k([["a", "a", "a"], ["b"]], ["a", "b"], ks=(1, 3)) == {1: 1.0}
    with pytest.raises(ValueError, match="2 sample lists but 1 gold"):
        maj_at_k([["a"], ["b"]], ["a"])
    assert maj_at_k([], []) == {}
    assert any_correct([["a"]], [None]) == 0.0


def test_adaptive_voting_stops_when_settled_and_never_past_the_cap() -> None:
    from scotd.voting import adaptive_vote, leader_confidence

    assert adaptive_vote(["A"] * 30, 30).spent == 4  # 1 - 2**-5 = 0.969 >= 0.95 after 4 votes
    # A B A A A A A: confidence after each vote .75 .5 .69 .81 .89 .94 .96 -> stops at the 7th.
    seq = ["A", "B", "A", "A", "A", "A", "A", "B", "B"]
    assert [round(leader_confidence([seq[:i].count("A"), seq[:i].count("B")]), 2) for i in range(1, 8)] == [
        0.75, 0.5, 0.69, 0.81, 0.89, 0.94, 0.96,
    ]  # fmt: skip
    got = adaptive_vote(seq, 30)
    assert got.spent == 7 and got.vote.label == "A" and got.vote.counts == {"A": 6, "B": 1}
    assert adaptive_vote([None] * 10, 6).spent == 6  # nothing parses: the whole budget, no answer
    assert adaptive_vote([None] * 10, 6).vote.label is None


def test_adaptive_voting_with_only_the_exact_rule_agrees_with_exhaustive_voting() -> None:
    import random

    from scotd.voting import adaptive_vote, vote

    rng = random.Random(0)
    saved = 0
    for _ in range(300):
        seq = [rng.choice(["A", "A", "A", "B", "C", None]) for _ in range(30)]
        exact = adaptive_vote(seq, 30, confidence=1.1)  # > 1: only "cannot be overtaken" stops early
        assert exact.vote.label == vote(seq).label and exact.spent <= 30
        saved += 30 - exact.spent
    assert saved > 0  # the exact rule does stop early on some sequences
