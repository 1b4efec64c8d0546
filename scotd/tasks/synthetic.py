"""The built-in ``synthetic`` task: multi-step add/subtract word problems with five numeric choices.

Design (measured by a prototype, see ``shared/docs/synthetic-task.md``): a name, an object, a
start value in [2, 20], then 2–4 steps that each add or subtract an operand in 1..9, every running
value in [0, 30], each step phrased one of four ways per operation::

    Gina has 10 pens. She sells 7. She buys 8 more. How many pens does Gina have now?

The five choices are the answer and four distinct non-negative distractors drawn from the mistakes
a reasoner makes: intermediate results (or the start), the answer with the last step skipped, the
answer with one step's operation flipped, and the answer ± 1 / ± 2. The answer's position is random.

Why chain of thought should help a tiny student: answering in one step means composing every
step at once inside a single forward pass (and the distractors punish partial composition), while
each step of a chain is one small addition or subtraction of numbers below 31 that the student can
copy from the previous sentence. The answer is written as the value (``So the answer is: 9``), not
the letter: the prototype's student got the value right but the letter at chance, so the task's
spec uses ``answer_format="text"`` and the shared parser maps the value to its choice.

Splits are disjoint by construction: each candidate problem goes to a split by a hash of its
arithmetic signature (start and steps, not the name, object or wording), independent of the seed,
and ``generate`` skips candidates of other splits. So no question text — not even the same
arithmetic in other words — appears in two splits, for any seeds. The i-th example depends only
on ``(seed, split, i)``, so a shorter run is a prefix of a longer one.

Two evaluation-only splits probe robustness (in the spirit of the paper's contrast sets, §3.4):
``contrast`` — the i-th test problem minimally edited so that its answer changes (one operand
changed, or one step's operation flipped; same name, object and wording otherwise); ``ood`` —
problems with 5–6 steps, more than any training problem has.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Literal

from scotd.tasks.official import TaskSpec
from scotd.tasks.schema import Example

SPEC = TaskSpec(
    name="synthetic", files={}, folder="", hub_id="", hub_config="", label_case="lower", answer_format="text"
)
DEFAULT_SIZES = {"train": 1000, "validation": 300, "test": 300, "contrast": 300, "ood": 300}
EXTRA_SPLITS = ("contrast", "ood")  # evaluation only: see the module docstring
LABELS = ("a", "b", "c", "d", "e")

START_RANGE = (2, 20)
OPERAND_RANGE = (1, 9)
VALUE_RANGE = (0, 30)
STEP_COUNTS = (2, 3, 4)
OOD_STEP_COUNTS = (5, 6)
# Share of arithmetic signatures per split (out of 10 hash buckets).
_SPLIT_BUCKETS = {"train": range(0, 6), "validation": range(6, 8), "test": range(8, 10)}
# Bounded search for a candidate of the wanted split: each draw lands there with p >= 0.2.
_MAX_DRAWS = 1000

Op = Literal["+", "-"]

# Names used by the generator; the prompt set's demonstrations use names outside this list.
NAMES: dict[str, str] = {
    "Gina": "She", "Tom": "He", "Ava": "She", "Ben": "He", "Lily": "She", "Sam": "He",
    "Maya": "She", "Leo": "He", "Emma": "She", "Noah": "He", "Zoe": "She", "Jack": "He",
    "Mia": "She", "Owen": "He", "Ella": "She", "Max": "He", "Ruby": "She", "Finn": "He",
    "Nora": "She", "Luke": "He",
}  # fmt: skip
OBJECTS = (
    "pens", "apples", "marbles", "stickers", "books", "cards",
    "coins", "shells", "cookies", "stamps", "balloons", "pencils",
)  # fmt: skip


@dataclass(frozen=True)
class Phrasing:
    """One way to say a step: the question sentence, and verb forms the teacher's chain reuses."""

    key: str
    op: Op
    sentence: str  # "{P} buys {k} more."
    verb: str  # "buys", as in "She buys 8"
    gerund: str  # "buying", as in "After buying 8"


PHRASINGS: dict[str, Phrasing] = {
    p.key: p
    for p in (
        Phrasing("buy", "+", "{P} buys {k} more.", "buys", "buying"),
        Phrasing("find", "+", "{P} finds {k} more.", "finds", "finding"),
        Phrasing("get", "+", "{P} gets {k} more from a friend.", "gets", "getting"),
        Phrasing("given", "+", "{P} is given {k} more.", "is given", "being given"),
        Phrasing("sell", "-", "{P} sells {k}.", "sells", "selling"),
        Phrasing("give", "-", "{P} gives {k} away.", "gives away", "giving away"),
        Phrasing("lose", "-", "{P} loses {k}.", "loses", "losing"),
        Phrasing("use", "-", "{P} uses {k}.", "uses", "using"),
    )
}
_BY_OP: dict[str, list[str]] = {op: [k for k, p in PHRASINGS.items() if p.op == op] for op in "+-"}


@dataclass(frozen=True)
class Step:
    phrasing: str  # a key of PHRASINGS
    amount: int

    @property
    def op(self) -> Op:
        return PHRASINGS[self.phrasing].op


@dataclass(frozen=True)
class Problem:
    """A structured word problem; ``pronoun`` is "She" or "He" (capitalised)."""

    name: str
    pronoun: str
    obj: str
    start: int
    steps: tuple[Step, ...]


def apply(value: int, op: str, amount: int) -> int:
    return value + amount if op == "+" else value - amount


def running_values(problem: Problem) -> list[int]:
    """The start value followed by the value after each step."""
    values = [problem.start]
    for step in problem.steps:
        values.append(apply(values[-1], step.op, step.amount))
    return values


def solve(problem: Problem) -> int:
    return running_values(problem)[-1]


def question_text(problem: Problem) -> str:
    sentences = [f"{problem.name} has {problem.start} {problem.obj}."]
    for step in problem.steps:
        sentences.append(PHRASINGS[step.phrasing].sentence.format(P=problem.pronoun, k=step.amount))
    sentences.append(f"How many {problem.obj} does {problem.name} have now?")
    return " ".join(sentences)


_OPENING = re.compile(r"^([A-Z][a-z]+) has (\d+) ([a-z]+)\.$")
_ENDING = re.compile(r"^How many ([a-z]+) does ([A-Z][a-z]+) have now\?$")


def _step_pattern(sentence: str) -> re.Pattern[str]:
    """``"{P} sells {k}."`` -> ``^(She|He) sells (\\d+)\\.$``."""
    escaped = re.escape(sentence).replace(r"\{P\}", "(She|He)").replace(r"\{k\}", r"(\d+)")
    return re.compile(f"^{escaped}$")


_STEP_PATTERNS = [(key, _step_pattern(p.sentence)) for key, p in PHRASINGS.items()]
_SENTENCE_END = re.compile(r"(?<=[.?])\s+")


def parse_question(question_text: str) -> Problem | None:
    """Recover the structured problem from its text (whitespace-insensitive); ``None`` if it is not one."""
    sentences = _SENTENCE_END.split(" ".join(question_text.split()))
    if len(sentences) < 3:
        return None
    opening, ending = _OPENING.match(sentences[0]), _ENDING.match(sentences[-1])
    if opening is None or ending is None:
        return None
    name, start, obj = opening.group(1), int(opening.group(2)), opening.group(3)
    if ending.group(1) != obj or ending.group(2) != name:
        return None
    steps: list[Step] = []
    pronouns: set[str] = set()
    for sentence in sentences[1:-1]:
        for key, pattern in _STEP_PATTERNS:
            m = pattern.match(sentence)
            if m:
                pronouns.add(m.group(1))
                steps.append(Step(key, int(m.group(2))))
                break
        else:
            return None
    if len(pronouns) != 1:
        return None
    return Problem(name=name, pronoun=pronouns.pop(), obj=obj, start=start, steps=tuple(steps))


def signature(problem: Problem) -> str:
    """The arithmetic alone (start and signed operands): what split assignment hashes."""
    return " ".join([str(problem.start), *(f"{s.op}{s.amount}" for s in problem.steps)])


def split_of(problem: Problem) -> str:
    bucket = int.from_bytes(hashlib.sha256(signature(problem).encode()).digest()[:8], "big") % 10
    return next(split for split, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


def sample_problem(rng: random.Random, step_counts: tuple[int, ...] = STEP_COUNTS) -> Problem:
    """One random problem within the design's ranges (any split)."""
    name = rng.choice(sorted(NAMES))
    value = rng.randint(*START_RANGE)
    start = value
    steps: list[Step] = []
    for _ in range(rng.choice(step_counts)):
        ops = [
            op
            for op in "+-"
            if (op == "+" and value < VALUE_RANGE[1]) or (op == "-" and value > VALUE_RANGE[0])
        ]
        op = rng.choice(ops)
        room = VALUE_RANGE[1] - value if op == "+" else value - VALUE_RANGE[0]
        amount = rng.randint(OPERAND_RANGE[0], min(OPERAND_RANGE[1], room))
        steps.append(Step(rng.choice(_BY_OP[op]), amount))
        value = apply(value, op, amount)
    return Problem(name=name, pronoun=NAMES[name], obj=rng.choice(OBJECTS), start=start, steps=tuple(steps))


def distractors(problem: Problem, rng: random.Random, k: int = 4) -> list[int]:
    """``k`` distinct non-negative wrong values, drawn from the design's mistake types."""
    values = running_values(problem)
    answer = values[-1]
    # Flipping one step's operation moves the answer by twice that step's operand.
    flipped = [answer - 2 * s.amount if s.op == "+" else answer + 2 * s.amount for s in problem.steps]
    # values[:-1] holds the start, the intermediates and values[-2] = the last step skipped.
    pool = {v for v in [*values[:-1], *flipped, answer - 2, answer - 1, answer + 1, answer + 2] if v >= 0}
    pool.discard(answer)
    chosen = rng.sample(sorted(pool), min(k, len(pool)))
    extra = answer + 3
    while len(chosen) < k:  # only for degenerate problems; bounded by k
        if extra not in chosen:
            chosen.append(extra)
        extra += 1
    return chosen


def make_example(problem: Problem, rng: random.Random, *, id_: str, split: str) -> Example:
    """The five-choice example for ``problem``; the answer's position is uniform over a..e."""
    answer = solve(problem)
    values = [answer, *distractors(problem, rng)]
    rng.shuffle(values)
    choices = tuple((label, str(v)) for label, v in zip(LABELS, values, strict=True))
    gold = LABELS[values.index(answer)]
    return Example(
        id=id_, task=SPEC.name, split=split, question=question_text(problem), choices=choices, gold=gold
    )


def _problem(split: str, i: int, seed: int) -> tuple[Problem, random.Random]:
    for draw in range(_MAX_DRAWS):
        rng = random.Random(f"scotd-synthetic:{seed}:{split}:{i}:{draw}")
        problem = sample_problem(rng)
        if split_of(problem) == split:
            return problem, rng
    raise RuntimeError(f"no {split} problem in {_MAX_DRAWS} draws (split buckets misconfigured?)")


def _in_range(problem: Problem) -> bool:
    return all(VALUE_RANGE[0] <= v <= VALUE_RANGE[1] for v in running_values(problem))


def minimal_edits(problem: Problem) -> list[Problem]:
    """Every problem one edit away whose answer differs: one operand moved by 1 or 2 (within 1..9),
    or one step's operation flipped (its phrasing swapped for the same-position one of the other
    operation); running values stay in range."""
    answer = solve(problem)
    out = []
    for j, step in enumerate(problem.steps):
        flipped = _BY_OP["-" if step.op == "+" else "+"][_BY_OP[step.op].index(step.phrasing)]
        candidates = [Step(step.phrasing, step.amount + d) for d in (-2, -1, 1, 2)] + [
            Step(flipped, step.amount)
        ]
        for new in candidates:
            if not OPERAND_RANGE[0] <= new.amount <= OPERAND_RANGE[1]:
                continue
            edited = Problem(
                problem.name, problem.pronoun, problem.obj, problem.start,
                (*problem.steps[:j], new, *problem.steps[j + 1 :]),
            )  # fmt: skip
            if _in_range(edited) and solve(edited) != answer:
                out.append(edited)
    return out


def _example(split: str, i: int, seed: int) -> Example:
    id_ = f"syn-{split}-{i:06d}"
    if split == "contrast":
        problem, _ = _problem("test", i, seed)
        rng = random.Random(f"scotd-synthetic:{seed}:contrast:{i}")
        return make_example(rng.choice(minimal_edits(problem)), rng, id_=id_, split=split)
    if split == "ood":
        rng = random.Random(f"scotd-synthetic:{seed}:ood:{i}")
        return make_example(sample_problem(rng, OOD_STEP_COUNTS), rng, id_=id_, split=split)
    problem, rng = _problem(split, i, seed)
    return make_example(problem, rng, id_=id_, split=split)


def generate(split: str, n: int, seed: int = 0) -> list[Example]:
    """``n`` examples of ``split``; the i-th depends only on ``(seed, split, i)``.

    Raises ``ValueError`` for an unknown split or a negative ``n``.
    """
    if split not in _SPLIT_BUCKETS and split not in EXTRA_SPLITS:
        raise ValueError(
            f"unknown split {split!r}; choose one of {', '.join([*_SPLIT_BUCKETS, *EXTRA_SPLITS])}"
        )
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_example(split, i, seed) for i in range(n)]
