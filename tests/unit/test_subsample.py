"""Paper §4 down-sampling on hand-made corpora: exact picks, determinism, the open-ended quotas."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from scotd.selection import DROP_SUBSAMPLE, CorpusSpec, build
from scotd.subsample import Subsample, SubsampleError, choose, open_ended_quotas, unique_bigrams


def _chain(i: int, text: str, logprob: float | None = -1.0) -> dict[str, Any]:
    return {"sample_index": i, "rationale": text, "mean_logprob": logprob}


def test_random_is_seeded_and_keeps_sampling_order() -> None:
    kept = {"q": [_chain(i, f"chain {i}") for i in range(10)]}
    a = choose(kept, Subsample("random", 4, seed=1))["q"]
    assert a == choose(kept, Subsample("random", 4, seed=1))["q"]
    assert [r["sample_index"] for r in a] == sorted(r["sample_index"] for r in a) and len(a) == 4
    draws = {
        tuple(r["sample_index"] for r in choose(kept, Subsample("random", 4, seed=s))["q"]) for s in range(5)
    }
    assert len(draws) > 1  # the seed matters


def test_likelihood_keeps_the_teachers_most_likely_chains() -> None:
    kept = {"q": [_chain(i, f"c{i}", lp) for i, lp in enumerate([-0.9, -0.1, -0.5, -0.05, -2.0])]}
    assert [r["sample_index"] for r in choose(kept, Subsample("likelihood", 2))["q"]] == [1, 3]
    kept["q"][0]["mean_logprob"] = None
    with pytest.raises(SubsampleError, match="log-probs"):
        choose(kept, Subsample("likelihood", 2))


def test_diverse_takes_one_chain_from_each_cluster() -> None:
    groups = {
        "fruit": ["apples and pears grow on trees", "pears and apples grow on old trees"],
        "trains": ["the train leaves the station at noon", "the late train leaves the station"],
        "music": ["the violin plays a slow song", "a slow song on the violin"],
    }
    rows = [_chain(i, t) for i, t in enumerate(t for ts in groups.values() for t in ts)]
    picked = choose({"q": rows}, Subsample("diverse", 3, seed=0))["q"]
    topic = {t: name for name, ts in groups.items() for t in ts}
    assert sorted(topic[r["rationale"]] for r in picked) == ["fruit", "music", "trains"]


def test_diverse_with_an_unknown_embedder_says_what_to_use() -> None:
    rows = {"q": [_chain(i, f"text {i}") for i in range(4)]}
    with pytest.raises(SubsampleError, match="tfidf"):
        choose(rows, Subsample("diverse", 2, embedder="word2vec"))


def test_open_ended_quintiles_keep_1_3_5_7_9_with_the_same_total() -> None:
    bigrams = {f"q{i}": i for i in range(10)}  # q0 least open-ended ... q9 most
    quotas = open_ended_quotas(bigrams, 5)
    assert [quotas[f"q{i}"] for i in range(10)] == [1, 1, 3, 3, 5, 5, 7, 7, 9, 9]
    assert sum(quotas.values()) == 5 * len(bigrams)
    assert unique_bigrams(["a b c", "a b d"]) == 3  # (a,b), (b,c), (b,d)


def test_corpus_build_counts_what_selection_dropped_and_records_it() -> None:
    rows = [
        {
            "example_id": f"q{q}",
            "sample_index": i,
            "rationale": f"step {q} {i} " * (1 + i),
            "pred_label": "A",
            "gold": "A",
            "correct": True,
            "error": None,
            "mean_logprob": -i / 10,
        }
        for q in range(3)
        for i in range(6)
    ]
    train, stats = build(rows, CorpusSpec(mode="correct", per_example=2, select="likelihood"))
    assert len(train) == 6 and {r["sample_index"] for r in train} == {0, 1}
    assert stats.dropped[DROP_SUBSAMPLE] == 12 and stats.selection == {
        "strategy": "likelihood",
        "k": 2,
        "seed": 0,
    }
    assert stats.kept_per_question == {"mean": 2.0, "min": 2, "max": 2} and stats.mean_logprob == -0.05
    first, _ = build(rows, CorpusSpec(mode="correct", per_example=2))  # the N ablation: unchanged
    assert {r["sample_index"] for r in first} == {0, 1} and len(first) == 6


def test_question_fractions_nest_and_drop_whole_questions() -> None:
    from scotd.selection import DROP_QUESTION_FRACTION, question_subset

    ids = [f"q{i}" for i in range(50)]
    sets = [question_subset(ids, f) for f in (0.2, 0.4, 0.6, 0.8, 1.0)]
    assert [len(s) for s in sets] == [10, 20, 30, 40, 50]
    assert all(a <= b for a, b in itertools.pairwise(sets))
    rows = [
        {"example_id": q, "sample_index": i, "rationale": f"r {q} {i}", "pred_label": "A", "gold": "A",
         "correct": True, "error": None}
        for q in ids[:10] for i in range(3)
    ]  # fmt: skip
    train, stats = build(rows, CorpusSpec(mode="correct", question_fraction=0.5))
    assert stats.questions_kept == 5 and stats.dropped[DROP_QUESTION_FRACTION] == 15 and len(train) == 15
