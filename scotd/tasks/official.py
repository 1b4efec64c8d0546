"""The paper's three tasks in their official JSONL formats (and their Hugging Face hub twins)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from scotd.tasks.schema import Example
from scotd.tasks.validate import BAD_CHOICES, MISSING_QUESTION, RowRejected, build_example

LabelCase = Literal["lower", "upper"]


@dataclass(frozen=True)
class TaskSpec:
    """How one task is laid out on disk, on the hub and in prompts."""

    name: str
    # split -> file name under <data_dir>/<folder>/
    files: dict[str, str]
    folder: str
    hub_id: str
    hub_config: str
    label_case: LabelCase
    # OBQA prints its choices on the question line; the others one per line.
    choices_inline: bool = False
    # How the teacher and student write the final answer: the choice label "(b)" or its text "9".
    answer_format: Literal["label", "text"] = "label"


CSQA = TaskSpec(
    name="csqa",
    files={
        "train": "train_rand_split.jsonl",
        "validation": "dev_rand_split.jsonl",
        "test": "test_rand_split_no_answers.jsonl",
    },
    folder="csqa",
    hub_id="tau/commonsense_qa",
    hub_config="default",
    label_case="lower",
)
OPENBOOKQA = TaskSpec(
    name="openbookqa",
    files={"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"},
    folder="openbookqa",
    hub_id="allenai/openbookqa",
    hub_config="main",
    label_case="lower",
    choices_inline=True,
)
QUAREL = TaskSpec(
    name="quarel",
    files={
        "train": "quarel-v1-train.jsonl",
        "validation": "quarel-v1-dev.jsonl",
        "test": "quarel-v1-test.jsonl",
    },
    folder="quarel",
    hub_id="allenai/quarel",
    hub_config="default",
    label_case="upper",
)


def _case(label: str, case: LabelCase) -> str:
    return label.lower() if case == "lower" else label.upper()


def _choices_from_official(raw: Any, case: LabelCase, id_: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise RowRejected(BAD_CHOICES, f"id {id_!r}: 'question.choices' must be a list")
    out = []
    for c in raw:
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("label"), str)
            or not isinstance(c.get("text"), str)
        ):
            raise RowRejected(BAD_CHOICES, f"id {id_!r}: choice {c!r} needs string 'label' and 'text'")
        out.append((_case(c["label"].strip(), case), c["text"]))
    return out


def normalise_mcq(obj: dict[str, Any], spec: TaskSpec, split: str) -> Example:
    """CSQA / OBQA official row: ``{id, question: {stem, choices: [{label, text}]}, answerKey}``."""
    id_ = obj.get("id")
    q = obj.get("question")
    if not isinstance(q, dict):
        raise RowRejected(MISSING_QUESTION, f"id {id_!r}: 'question' must be an object with 'stem'")
    gold = obj.get("answerKey")
    return build_example(
        task=spec.name,
        split=split,
        id_=id_,
        question=q.get("stem"),
        choices=_choices_from_official(q.get("choices"), spec.label_case, id_),
        gold=_case(gold.strip(), spec.label_case) if isinstance(gold, str) and gold.strip() else None,
    )


_QUAREL_SPLIT = re.compile(r"\s*\(([A-Z])\)\s*")


def normalise_quarel(obj: dict[str, Any], spec: TaskSpec, split: str) -> Example:
    """QuaRel v1 row: ``{id, question: "stem (A) x (B) y", answer_index}``."""
    id_ = obj.get("id")
    text = obj.get("question")
    if not isinstance(text, str):
        raise RowRejected(BAD_CHOICES, f"id {id_!r}: 'question' must be a string")
    parts = _QUAREL_SPLIT.split(text)
    # parts = [stem, "A", text_a, "B", text_b, ...]
    stem, rest = parts[0], parts[1:]
    choices = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
    idx = obj.get("answer_index")
    gold = choices[idx][0] if isinstance(idx, int) and 0 <= idx < len(choices) else None
    if idx is not None and gold is None:
        gold = f"index {idx}"  # rejected below as gold_not_a_label, with the bad value shown
    return build_example(task=spec.name, split=split, id_=id_, question=stem, choices=choices, gold=gold)


def normalise_hub_row(obj: dict[str, Any], spec: TaskSpec, split: str, index: int) -> Example:
    """A row of the hub's parquet conversion, mapped onto the official layout."""
    if spec is QUAREL:
        return normalise_quarel({"id": obj.get("id", f"{split}-{index}"), **obj}, spec, split)
    choices = obj.get("choices") or {}
    official = {
        "id": obj.get("id"),
        "answerKey": obj.get("answerKey"),
        "question": {
            "stem": obj.get("question") if spec is CSQA else obj.get("question_stem"),
            "choices": [
                {"label": lab, "text": txt}
                for lab, txt in zip(choices.get("label", []), choices.get("text", []), strict=False)
            ],
        },
    }
    return normalise_mcq(official, spec, split)
