"""Read JSON Lines files row by row: bad bytes, bad JSON and bad rows become ``RowError``s."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scotd.tasks.schema import Example, LoadResult, RowError
from scotd.tasks.validate import (
    BAD_JSON,
    DUPLICATE_ID,
    MAX_ROW_DEPTH,
    NOT_AN_OBJECT,
    NOT_UTF8,
    TOO_DEEP,
    RowRejected,
    nesting_depth_exceeds,
)

# A normaliser maps one parsed JSON object to an Example (or raises RowRejected).
Normaliser = Callable[[dict[str, Any]], Example]


def read_jsonl(path: Path, normalise: Normaliser, *, limit: int | None = None) -> LoadResult:
    """Read ``path`` line by line; valid rows become examples, every other row a counted error.

    ``limit`` caps the number of *valid* examples returned (rows after it are not read).
    Blank lines are skipped silently; duplicate ids keep the first occurrence.
    """
    result = LoadResult()
    source = str(path)
    first_line_of: dict[str, int] = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if limit is not None and len(result.examples) >= limit:
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                result.rejected.append(RowError(source, line_no, NOT_UTF8, f"byte {e.start}: {e.reason}"))
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                result.rejected.append(RowError(source, line_no, BAD_JSON, e.msg + f" at column {e.colno}"))
                continue
            except RecursionError:  # the C parser recurses per nesting level
                result.rejected.append(RowError(source, line_no, TOO_DEEP, _too_deep()))
                continue
            except ValueError as e:  # e.g. an integer past Python's 4300-digit conversion limit
                result.rejected.append(RowError(source, line_no, BAD_JSON, str(e)[:200]))
                continue
            if nesting_depth_exceeds(obj):
                result.rejected.append(RowError(source, line_no, TOO_DEEP, _too_deep()))
                continue
            if not isinstance(obj, dict):
                result.rejected.append(RowError(source, line_no, NOT_AN_OBJECT, type(obj).__name__))
                continue
            try:
                example = normalise(obj)
            except RowRejected as e:
                result.rejected.append(RowError(source, line_no, e.reason, e.detail))
                continue
            if example.id in first_line_of:
                detail = f"id {example.id!r} first seen on line {first_line_of[example.id]}"
                result.rejected.append(RowError(source, line_no, DUPLICATE_ID, detail))
                continue
            first_line_of[example.id] = line_no
            result.examples.append(example)
    return result


def _too_deep() -> str:
    return f"nested more than {MAX_ROW_DEPTH} levels deep (a question row nests 3)"
