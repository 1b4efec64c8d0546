"""``scotd data fetch``: download a paper task from the Hugging Face hub into a data directory.

The files are written in the task's official JSONL layout (the one the loaders read first), so a
fetched directory and a hand-placed copy of the official release are interchangeable. Offline it
fails within seconds (the hub probe in ``scotd.tasks.hub``), before anything is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scotd.tasks.hub import HubUnavailable, check_hub_reachable, load_from_hub
from scotd.tasks.official import QUAREL, TaskSpec
from scotd.tasks.schema import Example, RowError


@dataclass(frozen=True)
class Fetched:
    """One split's outcome: the file written (or kept), its rows, and rows the hub got wrong."""

    split: str
    path: Path
    rows: int
    rejected: tuple[RowError, ...] = ()
    kept: bool = False  # already on disk, not downloaded again


def official_row(example: Example, spec: TaskSpec) -> dict[str, Any]:
    """``example`` in ``spec``'s official JSONL shape (the inverse of the loaders' normalisers)."""
    if spec is QUAREL:
        text = " ".join([example.question, *(f"({label}) {choice}" for label, choice in example.choices)])
        index = example.labels.index(example.gold) if example.gold is not None else None
        return {"id": example.id, "question": text, "answer_index": index}
    return {
        "id": example.id,
        "question": {
            "stem": example.question,
            "choices": [{"label": label.upper(), "text": choice} for label, choice in example.choices],
        },
        "answerKey": example.gold.upper() if example.gold is not None else "",
    }


def fetch_task(spec: TaskSpec, root: Path, *, force: bool = False) -> list[Fetched]:
    """Download every split of ``spec`` into ``root/<folder>/``; splits already there are kept.

    Raises ``HubUnavailable`` (nothing written) when the hub cannot be reached.
    """
    folder = root / spec.folder
    done: list[Fetched] = []
    missing = {s: n for s, n in spec.files.items() if force or not (folder / n).is_file()}
    for split, name in spec.files.items():
        if split not in missing:
            with open(folder / name, "rb") as f:
                done.append(Fetched(split, folder / name, sum(1 for line in f if line.strip()), kept=True))
    if missing:
        check_hub_reachable()
    for split, name in missing.items():
        path = folder / name
        try:
            result = load_from_hub(spec, split, None)
        except HubUnavailable as e:
            if "has no split" in str(e):  # e.g. a dataset published without a test split
                continue
            raise
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for ex in result.examples:
                f.write(json.dumps(official_row(ex, spec), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        done.append(Fetched(split, path, len(result.examples), tuple(result.rejected)))
    return done
