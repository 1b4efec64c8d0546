"""What the simulated teacher writes for a prompt: synthetic chains, recorded chains, or a fallback.

Backends, chosen per request from the prompt's LAST question (``prompt_reader.last_question``):

- ``synthetic``: the question parses as a synthetic problem; ``synthetic_cot.write_chain`` writes
  each sample and it ends ``So the answer is: <value>``. Completions (a base model) run on past
  the answer into a new ``Q:`` block, as real base models do; ``stop`` cuts that off.
- ``replay``: the stem is a recorded CSQA question; every sample is the recorded PaLM chain.
- ``fallback``: anything else gets a well-formed, uninformative chain naming a random choice
  (``So the answer is: (c)``), so load tests run on every task.

``--backend synthetic`` / ``replay`` restrict the server to that backend (plus the fallback);
``auto`` tries synthetic, then replay, then falls back.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from scotd.prompts import ANSWER_MARKER, STOP, student_prompt
from scotd.tasks.synthetic import Problem, make_example, parse_question, sample_problem
from scotd.teacher.sim.config import Backend
from scotd.teacher.sim.prompt_reader import PromptQuestion, last_question
from scotd.teacher.sim.replay import ReplayStore
from scotd.teacher.sim.synthetic_cot import greedy_rng, write_chain

BackendUsed = Literal["synthetic", "replay", "fallback"]
# Mean negative log-prob per token of a sample: mistakes and guesses look less likely, so a
# teacher-likelihood filter has a signal to work with.
_NLL_CORRECT_STEP = 0.1
_NLL_REPLAY = 0.3
_NLL_FALLBACK = 1.0


@dataclass(frozen=True)
class Sample:
    """One full generation (before ``stop`` / ``max_tokens``) and how its log-probs are drawn."""

    text: str
    mean_nll: float
    logprob_seed: int


@dataclass(frozen=True)
class Generation:
    backend: BackendUsed
    samples: list[Sample]


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class Teacher:
    """Writes ``n`` samples for a prompt. Pure given the ``rng`` it is handed (no I/O but replay's load)."""

    def __init__(self, backend: Backend, error_rate: float, replay: ReplayStore) -> None:
        self.backend = backend
        self.error_rate = error_rate
        self.replay = replay

    def generate(
        self, prompt: str, n: int, temperature: float, rng: random.Random, *, run_on: bool
    ) -> Generation:
        question = last_question(prompt)
        if self.backend in ("auto", "synthetic"):
            problem = parse_question(question.stem)
            if problem is not None:
                return Generation(
                    "synthetic", [self._synthetic(problem, temperature, rng, run_on) for _ in range(n)]
                )
        if self.backend in ("auto", "replay"):
            chain = self.replay.lookup(question.stem)
            if chain is not None:
                seed = _seed_of(chain)
                return Generation("replay", [Sample(chain, _NLL_REPLAY, seed)] * n)
        return Generation("fallback", [self._fallback(question, temperature, rng) for _ in range(n)])

    def _synthetic(self, problem: Problem, temperature: float, rng: random.Random, run_on: bool) -> Sample:
        # Greedy samples are identical: every draw, the run-on and the log-probs included.
        sample_rng = greedy_rng(problem) if temperature <= 0 else random.Random(rng.getrandbits(64))
        chain = write_chain(problem, sample_rng, temperature, self.error_rate)
        text = f"{chain.rationale} {ANSWER_MARKER} {chain.value}"
        if run_on:
            text += STOP + self._run_on(sample_rng, temperature)
        nll = _NLL_CORRECT_STEP * (1 + temperature) * (1 + 2 * chain.errors)
        return Sample(text, nll, sample_rng.getrandbits(64))

    def _run_on(self, rng: random.Random, temperature: float) -> str:
        """A base model keeps writing: a new question in the demonstrations' layout, answered."""
        problem = sample_problem(rng)
        example = make_example(problem, rng, id_="run-on", split="train")
        chain = write_chain(problem, rng, temperature, self.error_rate)
        return f"{student_prompt(example)}{chain.rationale} {ANSWER_MARKER} {chain.value}"

    def _fallback(self, question: PromptQuestion, temperature: float, rng: random.Random) -> Sample:
        choices = question.choices or tuple((label, "") for label in "abcde")
        pick = random.Random(_seed_of(question.stem)) if temperature <= 0 else rng
        label, text = pick.choice(choices)
        named = f"({label}) {text}".strip()
        body = f"Let me consider each option. Of the choices, {named} seems the most reasonable."
        return Sample(f"{body} {ANSWER_MARKER} ({label})", _NLL_FALLBACK, pick.getrandbits(64))
