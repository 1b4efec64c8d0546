"""The simulated teacher's chain-of-thought writer for the ``synthetic`` task.

``write_chain(problem, rng, temperature, error_rate)`` writes a rationale such as
``Gina starts with 10 pens. She sells 7, so 10 - 7 = 3. She buys 8 more, so 3 + 8 = 11.`` and
the value it reached. It behaves like a sampled LLM teacher:

- **Diversity follows temperature.** Each sentence (the start, every step, the ending) has a
  canonical template and alternatives, picked with softmax weights ``exp(1/T)`` for the canonical
  one and ``1`` for each alternative; alternatives also re-order harmlessly (the equation before
  the action, or the start folded into the first step).
- **Greedy is deterministic.** At ``T == 0`` every choice is the canonical template and the
  error decisions come from an RNG seeded by the question text alone (the ``rng`` argument is
  ignored), so a greedy teacher is reproducibly right or wrong on each question.
- **Mistakes propagate.** Each step is wrong with probability ``error_rate * (0.5 + 0.5 * T)``
  (capped at 0.9; so ``error_rate`` is the rate at ``T = 1`` and greedy makes half as many
  mistakes, as real teachers' greedy chains beat their samples): 30% of mistakes apply the wrong
  operation, 70% miscompute by ±1 or ±2. Later steps continue from the wrong value, so a wrong
  chain ends on a wrong value naturally, whether or not that value is among the choices.

``DEFAULT_ERROR_RATE`` is tuned so about 70% of samples at ``T = 1`` end on the right value (the
prototype's teacher; see ``shared/docs/synthetic-task.md``).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from scotd.tasks.synthetic import PHRASINGS, Problem, Step, apply, question_text

DEFAULT_ERROR_RATE = 0.115
WRONG_OP_SHARE = 0.3
MAX_STEP_ERROR = 0.9

# {N} the name, {P}/{p} the pronoun capitalised / not, {n} the start, {o} the object.
_STARTS = (
    "{N} starts with {n} {o}.",
    "{N} has {n} {o} at first.",
    "At first, {N} has {n} {o}.",
    "{N} begins with {n} {o}.",
    "",  # folded into the first step (see _FOLDED_FIRST)
)
# {X} the action ("sells 7", "buys 8 more"), {G} its gerund form, {eq} the equation "3 + 8 = 11".
_STEPS = (
    "{P} {X}, so {eq}.",
    "After {G}, {p} has {eq}.",
    "{P} {X}: {eq}.",
    "{P} {X}, which makes {eq} {o}.",
    "{eq}, since {p} {X}.",
    "Then {p} {X}, so now {p} has {eq}.",
)
_FOLDED_FIRST = "{N} has {n} {o} and {X}, so {eq}."
# {v} the final value.
_ENDINGS = (
    "",
    "{N} has {v} {o} now.",
    "In the end, {N} has {v} {o}.",
    "That makes {v} {o} in total.",
)


@dataclass(frozen=True)
class Chain:
    """A written rationale (without the answer sentence), its final value and its mistake count."""

    rationale: str
    value: int
    errors: int


def step_error_rate(error_rate: float, temperature: float) -> float:
    return min(MAX_STEP_ERROR, max(0.0, error_rate * (0.5 + 0.5 * temperature)))


def _pick(rng: random.Random, options: int, temperature: float) -> int:
    """Index of a template: 0 is canonical; softmax over logits (1, 0, 0, ...) at ``temperature``."""
    if temperature <= 0:
        return 0
    weights = [math.exp(min(1.0 / temperature, 50.0)), *([1.0] * (options - 1))]
    return rng.choices(range(options), weights=weights)[0]


def greedy_rng(problem: Problem) -> random.Random:
    """The RNG a greedy teacher draws its mistakes from: seeded by the question text only."""
    return random.Random(int.from_bytes(hashlib.sha256(question_text(problem).encode()).digest()[:8], "big"))


def _compute(rng: random.Random, value: int, step: Step, p_error: float) -> tuple[str, int, bool]:
    """``(op written, result written, mistaken?)`` for one step applied to ``value``."""
    if rng.random() >= p_error:
        return step.op, apply(value, step.op, step.amount), False
    wrong_op = "-" if step.op == "+" else "+"
    if rng.random() < WRONG_OP_SHARE and apply(value, wrong_op, step.amount) >= 0:
        return wrong_op, apply(value, wrong_op, step.amount), True
    right = apply(value, step.op, step.amount)
    delta = rng.choice((1, 2)) * rng.choice((-1, 1))
    # A miscomputation that would go negative goes the other way: teachers rarely write -1 pens.
    return step.op, right + delta if right + delta >= 0 else right - delta, True


def write_chain(problem: Problem, rng: random.Random, temperature: float, error_rate: float) -> Chain:
    """One sampled rationale for ``problem``; see the module docstring for the sampling model."""
    if temperature <= 0:
        rng = greedy_rng(problem)
    p_error = step_error_rate(error_rate, temperature)
    fmt = {"N": problem.name, "P": problem.pronoun, "p": problem.pronoun.lower(), "o": problem.obj}
    start = _STARTS[_pick(rng, len(_STARTS), temperature)]
    sentences = [start.format(n=problem.start, **fmt)] if start else []
    value, errors = problem.start, 0
    for i, step in enumerate(problem.steps):
        phrasing = PHRASINGS[step.phrasing]
        more = " more" if step.op == "+" else ""
        op, result, mistaken = _compute(rng, value, step, p_error)
        errors += mistaken
        parts = {
            "X": f"{phrasing.verb} {step.amount}{more}",
            "G": f"{phrasing.gerund} {step.amount}{more}",
            "eq": f"{value} {op} {step.amount} = {result}",
            "n": problem.start,
        }
        template = _FOLDED_FIRST if i == 0 and not start else _STEPS[_pick(rng, len(_STEPS), temperature)]
        sentence = template.format(**parts, **fmt)
        sentences.append(sentence[0].upper() + sentence[1:])
        value = result
    ending = _ENDINGS[_pick(rng, len(_ENDINGS), temperature)]
    if ending:
        sentences.append(ending.format(v=value, **fmt))
    return Chain(rationale=" ".join(sentences), value=value, errors=errors)
