"""Prompt layout: exact expected strings for teacher and student, per task style."""

from __future__ import annotations

from scotd import prompts
from scotd.tasks.schema import Example

CSQA_EX = Example(
    id="q-1",
    task="csqa",
    split="validation",
    question="Where would you keep milk?",
    choices=(("a", "oven"), ("b", "fridge"), ("c", "garden"), ("d", "car"), ("e", "roof")),
    gold="b",
)
OBQA_EX = Example("o-1", "openbookqa", "test", "The sun is", (("a", "cold"), ("b", "hot")), "b")
QUAREL_EX = Example("r-1", "quarel", "train", "Which is faster?", (("A", "a car"), ("B", "a snail")), "A")


def test_student_prompt_and_target_exact() -> None:
    assert prompts.student_prompt(CSQA_EX) == (
        "Q: Where would you keep milk?\nAnswer Choices:\n(a) oven\n(b) fridge\n(c) garden\n(d) car\n(e) roof\nA: "
    )
    assert prompts.student_target(CSQA_EX, " Milk must stay cold. ", "b") == (
        "Milk must stay cold. So the answer is: (b)\n\n"
    )
    assert prompts.label_only_target(CSQA_EX, "b") == "So the answer is: (b)\n\n"


def test_obqa_choices_inline_and_quarel_upper_labels() -> None:
    assert prompts.student_prompt(OBQA_EX) == "Q: The sun is (a) cold (b) hot\nA: "
    assert (
        prompts.student_prompt(QUAREL_EX)
        == "Q: Which is faster?\nAnswer Choices:\n(A) a car\n(B) a snail\nA: "
    )
    assert (
        prompts.student_target(QUAREL_EX, "Cars are fast.", "A") == "Cars are fast. So the answer is: (A)\n\n"
    )


def test_teacher_prompt_layout_and_demo_counts() -> None:
    counts = {name: len(prompts.load_prompt_set(name).demos) for name in ("csqa", "openbookqa", "quarel")}
    assert counts == {"csqa": 7, "openbookqa": 4, "quarel": 5}
    text = prompts.teacher_prompt(CSQA_EX)
    blocks = text.split("\n\n")
    assert len(blocks) == 8
    assert blocks[-1] == prompts.student_prompt(CSQA_EX)
    for block in blocks[:-1]:
        assert block.startswith("Q: ") and "\nAnswer Choices:\n(a) " in block
        assert block.rstrip().endswith(tuple(f"So the answer is: ({c})" for c in "abcde"))


def test_demo_order_is_shuffled_per_question_and_seeded() -> None:
    first = prompts.teacher_prompt(CSQA_EX)
    assert prompts.teacher_prompt(CSQA_EX) == first  # seeded by the id: stable
    other = Example("q-2", **{k: v for k, v in vars(CSQA_EX).items() if k != "id"})
    orders = {
        prompts.teacher_prompt(Example(f"q-{i}", "csqa", "train", "x?", CSQA_EX.choices, "a")).split("\n\n")[
            0
        ]
        for i in range(20)
    }
    assert len(orders) > 3, "the first demonstration should vary across questions"
    assert sorted(prompts.teacher_prompt(other).split("\n\n")[:-1]) == sorted(first.split("\n\n")[:-1])


def test_chat_messages_carry_the_same_prompt() -> None:
    messages = prompts.teacher_messages(CSQA_EX)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == prompts.teacher_prompt(CSQA_EX)


def test_prompt_set_version_is_a_content_hash() -> None:
    version = prompts.load_prompt_set("csqa").version
    assert version.startswith("csqa-") and len(version) == len("csqa-") + 12
    assert version != prompts.load_prompt_set("openbookqa").version


def test_jsonl_tasks_borrow_csqa_demos() -> None:
    ex = Example("j-1", "jsonl:/tmp/x.jsonl", "train", "Pick one", (("a", "x"), ("b", "y")), None)
    assert prompts.teacher_prompt(ex).count("So the answer is:") == 7
