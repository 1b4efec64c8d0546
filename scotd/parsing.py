"""Answer extraction: the one function that decides what a chain of thought answered.

Rule (the paper's, made robust to real teacher text): cut the generation at the first blank
line; find the LAST "So the answer is" (falling back to the last "the answer is"); read the
answer after it as, in order, a parenthesised label ``(b)`` (trailing choice text ignored), a
bare label ``b`` / ``B.``, or a choice's own text (``math problem``, or ``9`` for the synthetic
task). The label returned is spelled as in the example's choices; matching ignores case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from scotd.tasks.schema import Example

# Failure reasons: stable strings, counted in summaries.
NO_MARKER = "no_answer_marker"
EMPTY = "empty_answer"
NOT_A_CHOICE = "not_a_choice"
AMBIGUOUS = "ambiguous"

_STRONG_MARKER = re.compile(r"so\s+the\s+answer\s+is", re.IGNORECASE)
_WEAK_MARKER = re.compile(r"the\s+answer\s+is", re.IGNORECASE)
_PAREN_LABEL = re.compile(r"^\(\s*([A-Za-z])\s*\)")
_BARE_LABEL = re.compile(r"^([A-Za-z])\s*[.)]?$")
_EDGE_PUNCT = " \t\"'`*.,;:!?"


@dataclass(frozen=True)
class ParsedAnswer:
    """``label`` is a choice label or ``None``; then ``reason`` says why."""

    label: str | None
    reason: str | None
    rationale: str
    answer_text: str

    @property
    def ok(self) -> bool:
        return self.label is not None


def first_segment(text: str) -> str:
    """The generation up to its first blank line (where the teacher's stop sequence would cut)."""
    return re.split(r"\n[ \t]*\n", text, maxsplit=1)[0]


def _norm(text: str) -> str:
    return " ".join(text.lower().strip(_EDGE_PUNCT).split())


def parse_choices(text: str, choices: Sequence[tuple[str, str]]) -> ParsedAnswer:
    """Parse ``text`` against ``(label, text)`` choices. Never raises."""
    segment = first_segment(text)
    matches = list(_STRONG_MARKER.finditer(segment)) or list(_WEAK_MARKER.finditer(segment))
    if not matches:
        return ParsedAnswer(None, NO_MARKER, segment.strip(), "")
    last = matches[-1]
    rationale = segment[: last.start()].strip()
    tail = segment[last.end() :].lstrip(" \t:-").split("\n", 1)[0].strip()
    if not tail.strip(_EDGE_PUNCT):
        return ParsedAnswer(None, EMPTY, rationale, tail)
    by_label = {label.lower(): label for label, _ in choices}

    paren = _PAREN_LABEL.match(tail)
    if paren:
        letter = paren.group(1).lower()
        if letter in by_label:
            return ParsedAnswer(by_label[letter], None, rationale, tail)
        return ParsedAnswer(None, NOT_A_CHOICE, rationale, tail)

    # "either (b) parade or (e) rodeo": the teacher hedged between several labels.
    named = {m.lower() for m in re.findall(r"\(\s*([A-Za-z])\s*\)", tail)} & set(by_label)
    if len(named) > 1:
        return ParsedAnswer(None, AMBIGUOUS, rationale, tail)

    bare = _BARE_LABEL.match(tail.strip(" \t\"'`*"))
    if bare and bare.group(1).lower() in by_label:
        return ParsedAnswer(by_label[bare.group(1).lower()], None, rationale, tail)

    return _match_choice_text(tail, choices, rationale)


def _match_choice_text(tail: str, choices: Sequence[tuple[str, str]], rationale: str) -> ParsedAnswer:
    answer = _norm(tail)
    exact = [label for label, text in choices if _norm(text) == answer]
    if len(set(exact)) == 1:
        return ParsedAnswer(exact[0], None, rationale, tail)
    # "math problem, because ..." / "9 pens": a choice text at the start, at word boundaries.
    # The longest such choice wins ("ice cream" over "ice"); several of equal length are ambiguous.
    starts = [
        (len(_norm(text)), label)
        for label, text in choices
        if _norm(text) and re.match(re.escape(_norm(text)) + r"(?!\w)", answer)
    ]
    if starts:
        starts.sort(reverse=True)
        if len(starts) > 1 and starts[0][0] == starts[1][0]:
            return ParsedAnswer(None, AMBIGUOUS, rationale, tail)
        return ParsedAnswer(starts[0][1], None, rationale, tail)
    return ParsedAnswer(None, NOT_A_CHOICE, rationale, tail)


def parse_answer(text: str, example: Example) -> ParsedAnswer:
    """Parse a generation for ``example``; see the module docstring for the rule."""
    return parse_choices(text, example.choices)


def is_correct(parsed: ParsedAnswer, example: Example) -> bool | None:
    """``None`` for unlabeled examples; an unparseable answer counts as wrong."""
    if example.gold is None:
        return None
    return parsed.label == example.gold


def parse_label_only(text: str, choices: Sequence[tuple[str, str]]) -> ParsedAnswer:
    """For label-only students: the marker is optional, the first line may be the bare answer."""
    parsed = parse_choices(text, choices)
    if parsed.reason != NO_MARKER:
        return parsed
    return parse_choices("So the answer is: " + first_segment(text).strip(), choices)
