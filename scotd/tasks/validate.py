"""Turn a normalised row into an ``Example`` or a ``RowError`` naming what is wrong."""

from __future__ import annotations

from typing import Any

from scotd.tasks.schema import Example

# Reasons are stable strings: they are counted in summaries and asserted in tests.
BAD_JSON = "bad_json"
NOT_UTF8 = "not_utf8"
NOT_AN_OBJECT = "not_an_object"
MISSING_ID = "missing_id"
MISSING_QUESTION = "missing_question"
TOO_FEW_CHOICES = "too_few_choices"
BAD_CHOICES = "bad_choices"
DUPLICATE_LABEL = "duplicate_label"
GOLD_NOT_A_LABEL = "gold_not_a_label"
DUPLICATE_ID = "duplicate_id"
TOO_DEEP = "too_deep"

# A question row nests three levels (row > choices > {label, text}); far deeper is hostile input
# that would overflow the stack of anything recursive downstream (repr, pyarrow, the JSON writer).
MAX_ROW_DEPTH = 16
MAX_DETAIL_CHARS = 300


def nesting_depth_exceeds(obj: Any, limit: int = MAX_ROW_DEPTH) -> bool:
    """True when ``obj`` (parsed JSON) nests dicts/lists more than ``limit`` levels; iterative."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class RowRejected(Exception):
    """Raised by a row normaliser; carries the reason code and a human detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if len(detail) > MAX_DETAIL_CHARS:  # details quote the row: keep errors.jsonl readable
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def build_example(*, task: str, split: str, id_: Any, question: Any, choices: Any, gold: Any) -> Example:
    """Validate the pieces of one row; raise ``RowRejected`` naming the first problem."""
    if id_ is None or (isinstance(id_, str) and not id_.strip()):
        raise RowRejected(MISSING_ID, "the row has no 'id'")
    if not isinstance(question, str) or not question.strip():
        raise RowRejected(MISSING_QUESTION, f"id {id_!r}: the question is empty or missing")
    if not isinstance(choices, list | tuple):
        raise RowRejected(BAD_CHOICES, f"id {id_!r}: 'choices' must be a list")
    pairs: list[tuple[str, str]] = []
    for choice in choices:
        if (
            not isinstance(choice, tuple | list)
            or len(choice) != 2
            or not all(isinstance(x, str) and x.strip() for x in choice)
        ):
            raise RowRejected(BAD_CHOICES, f"id {id_!r}: choice {choice!r} needs a label and a text")
        pairs.append((choice[0].strip(), choice[1].strip()))
    if len(pairs) < 2:
        raise RowRejected(TOO_FEW_CHOICES, f"id {id_!r}: {len(pairs)} choice(s), need at least 2")
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise RowRejected(DUPLICATE_LABEL, f"id {id_!r}: labels {labels}")
    if gold is not None and gold not in labels:
        raise RowRejected(GOLD_NOT_A_LABEL, f"id {id_!r}: gold {gold!r} is not one of {labels}")
    return Example(
        id=str(id_), task=task, split=split, question=question.strip(), choices=tuple(pairs), gold=gold
    )
