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


class RowRejected(Exception):
    """Raised by a row normaliser; carries the reason code and a human detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
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
