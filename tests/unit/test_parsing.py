"""Answer parsing: table-driven cases and the real PaLM-540B CSQA chains of thought."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scotd.parsing import AMBIGUOUS, EMPTY, NO_MARKER, NOT_A_CHOICE, parse_choices

CHOICES = (
    ("a", "park"),
    ("b", "coloring book"),
    ("c", "garden center"),
    ("d", "math problem"),
    ("e", "gravity"),
)
NUMBERS = (("a", "7"), ("b", "19"), ("c", "9"), ("d", "11"), ("e", "3"))
UPPER = (("A", "more friction"), ("B", "less friction"))


@pytest.mark.parametrize(
    ("text", "choices", "label", "reason"),
    [
        ("It is arithmetic. So the answer is: (d)", CHOICES, "d", None),
        ("So the answer is (d) math problem.", CHOICES, "d", None),
        ("So the answer is (D)", CHOICES, "d", None),
        ("So the answer is: d", CHOICES, "d", None),
        ("So the answer is: D.", CHOICES, "d", None),
        ("So the answer is: math problem", CHOICES, "d", None),
        ("So the answer is Math Problem.", CHOICES, "d", None),
        ("so the answer is: garden center, because plants", CHOICES, "c", None),
        (
            "First (a). So the answer is (b). Wait. So the answer is: (e)",
            CHOICES,
            "e",
            None,
        ),  # the LAST marker
        ("Therefore the answer is (c)", CHOICES, "c", None),  # weak marker fallback
        (
            "So the answer is: (b)\n\nQ: next question\nSo the answer is: (a)",
            CHOICES,
            "b",
            None,
        ),  # cut at blank line
        ("So the answer is: (b)\n  \nQ: next", CHOICES, "b", None),  # whitespace-only blank line
        ("10 - 3 = 7, 7 + 2 = 9. So the answer is: 9", NUMBERS, "c", None),
        ("So the answer is: 19.", NUMBERS, "b", None),  # not confused with 9
        ("So the answer is: 9 pens", NUMBERS, "c", None),
        ("So the answer is: 12", NUMBERS, None, NOT_A_CHOICE),  # a value that is no choice
        ("So the answer is: (B)", UPPER, "B", None),
        ("So the answer is: less friction", UPPER, "B", None),
        ("So the answer is (f)", CHOICES, None, NOT_A_CHOICE),
        ("So the answer is either (b) parade or (e) rodeo.", CHOICES, None, AMBIGUOUS),
        ("So the answer is one of these.", CHOICES, None, NOT_A_CHOICE),
        ("So the answer is:", CHOICES, None, EMPTY),
        ("So the answer is: .", CHOICES, None, EMPTY),
        ("I think it is (d).", CHOICES, None, NO_MARKER),
        ("", CHOICES, None, NO_MARKER),
        ("\n\nSo the answer is (a)", CHOICES, None, NO_MARKER),  # nothing before the first blank line
    ],
)
def test_parse_table(text: str, choices: tuple, label: str | None, reason: str | None) -> None:
    parsed = parse_choices(text, choices)
    assert (parsed.label, parsed.reason) == (label, reason)


def test_rationale_is_the_text_before_the_marker() -> None:
    parsed = parse_choices("Milk must stay cold.  So the answer is: (b)", CHOICES)
    assert parsed.rationale == "Milk must stay cold."
    assert parsed.ok


def test_ambiguous_equal_length_prefixes() -> None:
    twins = (("a", "red"), ("b", "Red"))
    assert parse_choices("So the answer is: red", twins).reason == AMBIGUOUS


def _palm_parse_rates(root: Path, files: int) -> tuple[int, float, float]:
    """Parse every recorded PaLM-540B chain for CSQA train: (rows, parse rate, gold agreement)."""
    rows = [json.loads(line) for line in (root / "cqa_train.json").read_text().splitlines()]
    chains: list[str] = []
    for i in range(files):
        chains += json.loads((root / "llm" / f"train_CoT_{i}.json").read_text())
    assert len(rows) == len(chains)
    parsed = agree = 0
    for row, chain in zip(rows, chains, strict=True):
        choices = tuple(zip("abcde", row["choices"], strict=True))
        result = parse_choices(chain, choices)
        if result.ok:
            parsed += 1
            agree += result.label == "abcde"[row["choices"].index(row["answer"])]
    return len(rows), parsed / len(rows), agree / parsed


def test_palm_540b_csqa_chains_slice(data_dir: Path) -> None:
    """Real teacher text (run-on continuations included), the in-repo slice of 200 chains."""
    rows, parse_rate, agreement = _palm_parse_rates(data_dir / "distilling_step_by_step_cqa", files=1)
    assert rows == 200
    assert parse_rate >= 0.96
    assert 0.70 <= agreement <= 0.82


def test_palm_540b_csqa_chains(full_data: Path) -> None:
    """All 9,741 chains: ≥ 98% parse, gold agreement ≈ 77% (the published reference)."""
    rows, parse_rate, agreement = _palm_parse_rates(full_data / "distilling_step_by_step_cqa", files=10)
    print(f"PaLM-540B CSQA train: parse rate {parse_rate:.4f}, gold agreement among parsed {agreement:.4f}")
    assert rows == 9741
    assert parse_rate >= 0.98
    assert 0.75 <= agreement <= 0.80
