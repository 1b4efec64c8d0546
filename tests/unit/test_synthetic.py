"""The synthetic task (answer keys, determinism, split disjointness) and its simulated teacher."""

from __future__ import annotations

import random

import pytest

from scotd.parsing import parse_answer
from scotd.prompts import ANSWER_MARKER, load_prompt_set, teacher_prompt
from scotd.tasks import load_task
from scotd.tasks import synthetic as syn
from scotd.tasks.schema import Example
from scotd.teacher.sim.synthetic_cot import DEFAULT_ERROR_RATE, write_chain

SIZES = {"train": 2000, "validation": 600, "test": 600}


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Example]]:
    return {split: syn.generate(split, n) for split, n in SIZES.items()}


def test_every_answer_key_is_correct_and_within_the_design(splits: dict[str, list[Example]]) -> None:
    for split, examples in splits.items():
        for i, ex in enumerate(examples):
            assert ex.id == f"syn-{split}-{i:06d}" and ex.split == split and ex.task == "synthetic"
            problem = syn.parse_question(ex.question)
            assert problem is not None, ex.question
            assert syn.question_text(problem) == ex.question  # parse round-trip
            assert ex.labels == ("a", "b", "c", "d", "e")
            texts = [text for _, text in ex.choices]
            assert len(set(texts)) == 5 and all(t.isdigit() for t in texts)
            assert ex.gold is not None and ex.choice_text(ex.gold) == str(syn.solve(problem))
            values = syn.running_values(problem)
            assert 2 <= problem.start <= 20 and 2 <= len(problem.steps) <= 4
            assert all(1 <= s.amount <= 9 for s in problem.steps)
            assert all(0 <= v <= 30 for v in values)
            assert problem.pronoun == syn.NAMES[problem.name] and problem.obj in syn.OBJECTS


def test_answer_position_is_spread_over_all_labels(splits: dict[str, list[Example]]) -> None:
    golds = [ex.gold for ex in splits["train"]]
    for label in "abcde":
        assert 0.14 < golds.count(label) / len(golds) < 0.26


def test_generation_is_deterministic_with_the_prefix_property() -> None:
    for split in ("train", "test"):
        assert syn.generate(split, 50)[:10] == syn.generate(split, 10)
        assert syn.generate(split, 20, seed=3) == syn.generate(split, 20, seed=3)
        assert syn.generate(split, 20, seed=3) != syn.generate(split, 20, seed=4)
    assert load_task("synthetic", "validation", limit=7).examples == syn.generate("validation", 7)


def test_splits_share_no_question_and_no_arithmetic(splits: dict[str, list[Example]]) -> None:
    texts = {s: {ex.question for ex in exs} for s, exs in splits.items()}
    # Other seeds too: split membership does not depend on the seed.
    texts["test"] |= {ex.question for ex in syn.generate("test", 300, seed=1)}
    parsed = {s: [syn.parse_question(q) for q in qs] for s, qs in texts.items()}
    signatures = {s: {syn.signature(p) for p in ps if p is not None} for s, ps in parsed.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not texts[a] & texts[b]
        assert not signatures[a] & signatures[b]


@pytest.mark.parametrize(
    "text",
    [
        "Where do you keep milk?",
        "Gina has 10 pens. How many pens does Gina have now?",  # no step
        "Gina has 10 pens. She sells 7. How many apples does Gina have now?",  # object changes
        "Gina has 10 pens. She sells 7. He buys 2 more. How many pens does Gina have now?",  # pronoun
        "Gina has 10 pens. She juggles 7. How many pens does Gina have now?",  # unknown step
    ],
)
def test_parse_question_rejects_other_text(text: str) -> None:
    assert syn.parse_question(text) is None


def test_parse_question_ignores_whitespace() -> None:
    problem = syn.parse_question(
        "Gina has 10 pens.  She sells 7.\nShe buys 8 more. How many pens does Gina have now?"
    )
    assert problem is not None and syn.solve(problem) == 11 and problem.pronoun == "She"


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        syn.generate("dev", 3)


def test_demonstrations_are_correct_greedy_chains_unlike_any_generated_question(
    splits: dict[str, list[Example]],
) -> None:
    demos = load_prompt_set("synthetic").demos
    assert 4 <= len(demos) <= 6
    generated = {ex.question for exs in splits.values() for ex in exs}
    for demo in demos:
        problem = syn.parse_question(demo.example.question)
        assert problem is not None and problem.name not in syn.NAMES
        assert demo.example.gold is not None
        assert demo.example.choice_text(demo.example.gold) == str(syn.solve(problem))
        assert demo.example.question not in generated
        # A teacher that never errs writes exactly the demonstrations' style at T=0.
        assert write_chain(problem, random.Random(0), 0.0, 0.0).rationale == demo.rationale
    prompt = teacher_prompt(splits["test"][0])
    assert prompt.count("Q: ") == len(demos) + 1 and prompt.endswith("\nA: ")


def test_teacher_accuracy_at_temperature_one_is_about_seventy_percent(
    splits: dict[str, list[Example]],
) -> None:
    rng = random.Random(11)
    correct = total = 0
    for ex in splits["train"][:600]:
        problem = syn.parse_question(ex.question)
        assert problem is not None
        for _ in range(2):
            chain = write_chain(problem, rng, 1.0, DEFAULT_ERROR_RATE)
            correct += chain.value == syn.solve(problem)
            total += 1
            if chain.errors == 0:
                assert chain.value == syn.solve(problem)
    assert total >= 1000
    assert 0.65 <= correct / total <= 0.75, correct / total


def test_greedy_is_identical_every_time_and_sampling_is_diverse() -> None:
    problem = syn.parse_question(syn.generate("train", 1)[0].question)
    assert problem is not None
    greedy = {write_chain(problem, random.Random(seed), 0.0, DEFAULT_ERROR_RATE) for seed in range(20)}
    assert len(greedy) == 1
    rng = random.Random(5)
    sampled = {write_chain(problem, rng, 1.0, DEFAULT_ERROR_RATE).rationale for _ in range(30)}
    assert len(sampled) >= 20


def test_greedy_mistakes_depend_on_the_question_only() -> None:
    # With a high error rate some greedy chains are wrong, always the same ones.
    problems = [syn.parse_question(ex.question) for ex in syn.generate("test", 200)]
    first = [write_chain(p, random.Random(1), 0.0, 0.5).value for p in problems if p]
    second = [write_chain(p, random.Random(2), 0.0, 0.5).value for p in problems if p]
    wrong = sum(v != syn.solve(p) for v, p in zip(first, problems, strict=True) if p)
    assert first == second and 0 < wrong < len(first)


def test_the_shared_parser_maps_the_value_to_its_choice() -> None:
    ex = syn.generate("validation", 1)[0]
    problem = syn.parse_question(ex.question)
    assert problem is not None
    chain = write_chain(problem, random.Random(0), 0.0, 0.0)
    assert parse_answer(f"{chain.rationale} {ANSWER_MARKER} {chain.value}", ex).label == ex.gold
    absent = next(v for v in range(100) if str(v) not in {t for _, t in ex.choices})
    assert parse_answer(f"{chain.rationale} {ANSWER_MARKER} {absent}", ex).label is None


def test_contrast_questions_are_test_questions_one_edit_away_with_another_answer() -> None:
    tests, contrasts = syn.generate("test", 60), syn.generate("contrast", 60)
    for t, c in zip(tests, contrasts, strict=True):
        a, b = syn.parse_question(t.question), syn.parse_question(c.question)
        assert a is not None and b is not None
        assert (a.name, a.obj, a.start, len(a.steps)) == (b.name, b.obj, b.start, len(b.steps))
        assert sum(x != y for x, y in zip(a.steps, b.steps, strict=True)) == 1  # exactly one step edited
        assert syn.solve(a) != syn.solve(b) and c.choice_text(c.gold) == str(syn.solve(b))
        assert all(0 <= v <= 30 for v in syn.running_values(b))


def test_ood_questions_have_more_steps_than_any_training_question() -> None:
    train_steps = {len(syn.parse_question(e.question).steps) for e in syn.generate("train", 200)}  # type: ignore[union-attr]
    ood = [syn.parse_question(e.question) for e in syn.generate("ood", 50)]
    assert max(train_steps) == 4 and all(p is not None and len(p.steps) in (5, 6) for p in ood)
    assert load_task("synthetic", "ood", limit=3).examples[0].split == "ood"
    with pytest.raises(ValueError, match="contrast"):
        load_task("csqa", "contrast", limit=1)
