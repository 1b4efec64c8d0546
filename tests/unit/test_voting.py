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
