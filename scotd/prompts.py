"""Prompt layout for the teacher (few-shot) and the student (zero-shot), as in the SCoTD paper.

Every layer builds its text here, so the teacher, the trainer, the evaluator and the server see
byte-identical prompts::

    Q: <question>
    Answer Choices:
    (a) <choice>
    (b) <choice>
    A: <rationale> So the answer is: (b)

Teacher prompt: the task's demonstrations in that layout, blank-line separated, shuffled per
question (seeded by the question id), then the target question ending in ``A: ``.
Student input: the target question alone ending in ``A: ``; target: ``<rationale> So the answer
is: <answer>\\n\\n``. OBQA prints its choices inline; the synthetic task answers with the value
(``So the answer is: 9``) rather than the letter.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from scotd.tasks import task_spec
from scotd.tasks.official import TaskSpec
from scotd.tasks.schema import Example

# Bump when the layout below changes: it is part of every cache key through ``PromptSet.version``.
TEMPLATE_VERSION = "scotd-prompt-v1"
ANSWER_MARKER = "So the answer is:"
STOP = "\n\n"
CHAT_SYSTEM = (
    "You answer multiple-choice questions. Think step by step in one short paragraph, then end "
    f"with '{ANSWER_MARKER} <answer>' exactly as in the examples. Do not write another question."
)


@dataclass(frozen=True)
class Demonstration:
    example: Example
    rationale: str


@dataclass(frozen=True)
class PromptSet:
    """The few-shot demonstrations of one task, with a content hash that caches key on."""

    name: str
    demos: tuple[Demonstration, ...]
    version: str


def question_block(example: Example, spec: TaskSpec | None = None) -> str:
    """``Q: <question>`` plus the answer choices, without the trailing ``A:``."""
    spec = spec or task_spec(example.task)
    if spec.choices_inline:
        inline = " ".join(f"({label}) {text}" for label, text in example.choices)
        return f"Q: {example.question} {inline}"
    lines = "\n".join(f"({label}) {text}" for label, text in example.choices)
    return f"Q: {example.question}\nAnswer Choices:\n{lines}"


def answer_string(example: Example, label: str, spec: TaskSpec | None = None) -> str:
    """How an answer is written after the marker: ``(b)``, or the choice text for value tasks."""
    spec = spec or task_spec(example.task)
    if spec.answer_format == "text":
        return example.choice_text(label)
    return f"({label})"


def student_prompt(example: Example) -> str:
    """The student's input: the question alone, ending in ``A: ``."""
    return f"{question_block(example)}\nA: "


def target_text(rationale: str, answer: str, answer_first: bool = False) -> str:
    """The student's target: ``<rationale> So the answer is: <answer>`` plus the blank-line stop.

    ``answer_first`` (the rationale-order ablation): ``So the answer is: <answer>`` on its own line,
    then the rationale; the shared parser reads both (the answer ends at the line break)."""
    rationale = rationale.strip()
    if answer_first and rationale:
        return f"{ANSWER_MARKER} {answer}\n{rationale}{STOP}"
    sep = " " if rationale else ""
    return f"{rationale}{sep}{ANSWER_MARKER} {answer}{STOP}"


def student_target(example: Example, rationale: str, label: str, answer_first: bool = False) -> str:
    return target_text(rationale, answer_string(example, label), answer_first)


def label_only_target(example: Example, label: str) -> str:
    """Target of the label-only baseline: the answer alone, in the same marker layout."""
    return target_text("", answer_string(example, label))


def demonstration_text(demo: Demonstration) -> str:
    assert demo.example.gold is not None
    return f"{question_block(demo.example)}\nA: {demo.rationale.strip()} {ANSWER_MARKER} " + answer_string(
        demo.example, demo.example.gold
    )


def _shuffle_seed(example_id: str) -> int:
    return int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "big")


PromptOrder = Literal["shuffled", "fixed"]


def teacher_prefix(
    example: Example, prompt_set: PromptSet | None = None, order: PromptOrder = "shuffled"
) -> str:
    """The demonstrations part of the few-shot prompt, ending with the separator.

    ``shuffled``: the order is seeded by the question id (the paper's code), so prompts share no
    prefix; ``fixed``: the prompt set's own order, byte-identical for every question, so a
    provider's prompt cache can serve it.
    """
    prompt_set = prompt_set or load_prompt_set(default_prompt_set_name(example.task))
    demos = list(prompt_set.demos)
    if order == "shuffled":
        random.Random(_shuffle_seed(example.id)).shuffle(demos)
    return STOP.join(demonstration_text(d) for d in demos) + STOP


def teacher_prompt(
    example: Example, prompt_set: PromptSet | None = None, order: PromptOrder = "shuffled"
) -> str:
    """Few-shot prompt: the demonstrations (see ``teacher_prefix``), then the question."""
    return teacher_prefix(example, prompt_set, order) + student_prompt(example)


def teacher_messages(
    example: Example, prompt_set: PromptSet | None = None, order: PromptOrder = "shuffled"
) -> list[dict[str, str]]:
    """The same prompt for chat endpoints: a system instruction and the few-shot text as the user turn."""
    return [
        {"role": "system", "content": CHAT_SYSTEM},
        {"role": "user", "content": teacher_prompt(example, prompt_set, order)},
    ]


def default_prompt_set_name(task: str) -> str:
    """Demonstrations per task; ``jsonl:`` tasks borrow CSQA's general commonsense ones."""
    return "csqa" if task.startswith("jsonl:") else task


@cache
def load_prompt_set(name: str) -> PromptSet:
    """Read ``scotd/prompt_sets/<name>.jsonl`` (one demonstration per line).

    Each line: ``{"id", "question", "choices": [[label, text], ...], "answer": label, "rationale"}``.
    """
    try:
        raw = resources.files("scotd.prompt_sets").joinpath(f"{name}.jsonl").read_text("utf-8")
    except FileNotFoundError:
        raise ValueError(f"no prompt set {name!r} (scotd/prompt_sets/{name}.jsonl)") from None
    demos = []
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        obj = json.loads(line)
        example = Example(
            id=str(obj["id"]),
            task=name,
            split="demo",
            question=obj["question"],
            choices=tuple((str(a), str(b)) for a, b in obj["choices"]),
            gold=obj["answer"],
        )
        if example.gold not in example.labels:
            raise ValueError(f"prompt set {name} line {line_no}: answer {example.gold!r} is not a label")
        demos.append(Demonstration(example=example, rationale=obj["rationale"]))
    digest = hashlib.sha256((TEMPLATE_VERSION + "\n" + raw).encode()).hexdigest()[:12]
    return PromptSet(name=name, demos=tuple(demos), version=f"{name}-{digest}")
