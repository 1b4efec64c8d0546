"""Find the question a few-shot prompt asks: the LAST ``Q:`` block, in ``scotd.prompts``' layout.

Recognised layouts (the block after the last ``\\n\\nQ: ``, or the whole prompt, up to its
trailing ``A:``)::

    Q: <question>\\nAnswer Choices:\\n(a) x\\n(b) y\\nA:      one choice per line (CSQA, QuaRel)
    Q: <question> (a) x (b) y\\nA:                          inline choices (OBQA)

Choice labels must run a, b, c, ... (or A, B, C, ...); anything else leaves the choices empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LAST_Q = "\n\nQ: "
_CHOICES_HEADER = "\nAnswer Choices:\n"
_CHOICE_LINE = re.compile(r"^\(([A-Za-z])\)\s?(.*)$")
_TRAILING_ANSWER = re.compile(r"\n?A:\s*$")
_INLINE_LABEL = re.compile(r"\s*\(([A-Za-z])\)\s*")


@dataclass(frozen=True)
class PromptQuestion:
    """The asked question's stem and its ``(label, text)`` choices (possibly none)."""

    stem: str
    choices: tuple[tuple[str, str], ...]


def normalise_stem(stem: str) -> str:
    """Whitespace-collapsed stem: the key recorded chains are looked up by."""
    return " ".join(stem.split())


def _sequential(labels: list[str]) -> bool:
    if not labels:
        return False
    first = "a" if labels[0].islower() else "A"
    return labels == [chr(ord(first) + i) for i in range(len(labels))]


def _inline_choices(block: str) -> PromptQuestion:
    # The choices start at the LAST "(a)": a stem may itself contain parentheses.
    start = max(block.rfind("(a) "), block.rfind("(A) "))
    if start <= 0:
        return PromptQuestion(block.strip(), ())
    parts = _INLINE_LABEL.split(block[start:])
    labels, texts = parts[1::2], parts[2::2]
    if parts[0].strip() or not _sequential(labels) or len(labels) != len(texts) or len(labels) < 2:
        return PromptQuestion(block.strip(), ())
    return PromptQuestion(block[:start].strip(), tuple(zip(labels, (t.strip() for t in texts), strict=True)))


def last_question(prompt: str) -> PromptQuestion:
    """The prompt's last question; a prompt without ``Q:`` is read as one bare question."""
    at = prompt.rfind(_LAST_Q)
    block = prompt[at + len(_LAST_Q) :] if at >= 0 else prompt.removeprefix("Q: ")
    block = _TRAILING_ANSWER.sub("", block)
    if _CHOICES_HEADER in block:
        stem, _, rest = block.partition(_CHOICES_HEADER)
        matches = [_CHOICE_LINE.match(line.strip()) for line in rest.strip().splitlines()]
        pairs = [(m.group(1), m.group(2).strip()) for m in matches if m]
        if len(pairs) == len(matches) and _sequential([label for label, _ in pairs]):
            return PromptQuestion(stem.strip(), tuple(pairs))
        return PromptQuestion(stem.strip(), ())
    return _inline_choices(block)
