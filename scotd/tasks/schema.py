"""The one record every task produces, and the record of a row that was rejected."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """A multiple-choice question.

    ``choices`` holds ``(label, text)`` pairs in display order; labels are what the prompt shows
    inside the parentheses (``a``..``e`` for CSQA/OBQA, ``A``/``B`` for QuaRel). ``gold`` is one of
    those labels, or ``None`` for unlabeled splits.
    """

    id: str
    task: str
    split: str
    question: str
    choices: tuple[tuple[str, str], ...]
    gold: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.choices)

    def choice_text(self, label: str) -> str:
        for lab, text in self.choices:
            if lab == label:
                return text
        raise KeyError(f"example {self.id!r} has no choice labelled {label!r}")

    def to_row(self) -> dict[str, object]:
        """A flat dict for Arrow/Parquet (choices as two parallel lists)."""
        return {
            "example_id": self.id,
            "task": self.task,
            "split": self.split,
            "question": self.question,
            "choice_labels": list(self.labels),
            "choice_texts": [text for _, text in self.choices],
            "gold": self.gold,
        }

    @classmethod
    def from_row(cls, row: dict[str, object]) -> Example:
        labels = [str(x) for x in row["choice_labels"]]  # type: ignore[attr-defined]
        texts = [str(x) for x in row["choice_texts"]]  # type: ignore[attr-defined]
        gold = row.get("gold")
        return cls(
            id=str(row["example_id"]),
            task=str(row["task"]),
            split=str(row["split"]),
            question=str(row["question"]),
            choices=tuple(zip(labels, texts, strict=True)),
            gold=None if gold is None else str(gold),
        )


@dataclass(frozen=True)
class RowError:
    """A malformed input row: where it is and why it was rejected."""

    source: str
    line: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.source}:{self.line}: {self.reason}{extra}"


@dataclass
class LoadResult:
    """Valid examples plus every rejected row (failures are data, not crashes)."""

    examples: list[Example] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    def rejected_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for err in self.rejected:
            counts[err.reason] = counts.get(err.reason, 0) + 1
        return dict(sorted(counts.items()))
