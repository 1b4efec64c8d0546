"""The ``jsonl:PATH`` task: bring your own multiple-choice questions.

Schema, one JSON object per line::

    {"id": "q1",                                  # required, unique
     "question": "Where do you keep milk?",        # required
     "choices": ["fridge", "oven"],                # >= 2; strings (labelled a, b, ...) or
                                                   #   [{"label": "a", "text": "fridge"}, ...]
     "answer": "a"}                                # optional: a label or a choice's exact text

``PATH`` may contain ``{split}`` (``jsonl:data/my_{split}.jsonl``); without it the same file
serves every split.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from scotd.tasks.jsonl import read_jsonl
from scotd.tasks.official import TaskSpec
from scotd.tasks.schema import Example, LoadResult
from scotd.tasks.validate import BAD_CHOICES, RowRejected, build_example

SPEC = TaskSpec(
    name="jsonl",
    files={},
    folder="",
    hub_id="",
    hub_config="",
    label_case="lower",
)


def _choices(raw: Any, id_: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise RowRejected(BAD_CHOICES, f"id {id_!r}: 'choices' must be a list")
    if len(raw) > len(string.ascii_lowercase):
        raise RowRejected(BAD_CHOICES, f"id {id_!r}: {len(raw)} choices, at most 26")
    out: list[tuple[str, str]] = []
    for i, c in enumerate(raw):
        if isinstance(c, str):
            out.append((string.ascii_lowercase[i], c))
        elif isinstance(c, dict) and isinstance(c.get("label"), str) and isinstance(c.get("text"), str):
            out.append((c["label"], c["text"]))
        else:
            raise RowRejected(
                BAD_CHOICES, f"id {id_!r}: choice {i} ({c!r}) must be a string or {{label, text}}"
            )
    return out


def normalise(obj: dict[str, Any], task: str, split: str) -> Example:
    id_ = obj.get("id")
    choices = _choices(obj.get("choices"), id_)
    answer = obj.get("answer")
    gold: str | None = None
    if answer is not None:
        # A label wins over a choice text that happens to spell another label.
        labels = {label for label, _ in choices}
        by_text = {text.strip(): label for label, text in choices}
        gold = str(answer) if str(answer) in labels else by_text.get(str(answer).strip(), str(answer))
    return build_example(
        task=task, split=split, id_=id_, question=obj.get("question"), choices=choices, gold=gold
    )


def load(path_template: str, split: str, *, limit: int | None = None) -> LoadResult:
    path = Path(path_template.replace("{split}", split)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task jsonl:{path_template}: no file {path} for split {split!r}")
    task = f"jsonl:{path_template}"
    return read_jsonl(path, lambda o: normalise(o, task, split), limit=limit)
