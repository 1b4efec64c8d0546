"""What the served student does with one request — pure, shared with evaluation (no Ray, no FastAPI).

``/v1/answer``: build the ``Example`` the same way every stage does, write the student prompt with
``scotd.prompts``, parse each of the K generations with ``scotd.parsing`` and vote with
``scotd.voting``. The Serve application (``scotd/serve/app.py``) only moves these objects over HTTP.

Temperature: below ``GREEDY_BELOW`` (0.01, 0 included) decoding is greedy, and greedy decoding
has one answer, so ``/v1/answer`` draws one rationale and votes it once (``samples: 1``) whatever
``votes`` says; the OpenAI routes return ``n`` copies of the one greedy completion.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from scotd import prompts
from scotd.generation.engines import GREEDY_BELOW, Generation, is_greedy
from scotd.parsing import ParsedAnswer, parse_choices, parse_label_only
from scotd.serve.config import ServeConfig
from scotd.tasks.schema import Example
from scotd.voting import vote

__all__ = ["GREEDY_BELOW", "AnswerRequest", "Choice", "answer", "prompt_problem"]
# A label is printed as "(label)" in the prompt and parsed back from the rationale: letters and
# digits only, so it can neither break the prompt's layout nor be confused with another label.
LABEL = re.compile(r"[A-Za-z0-9]{1,3}")


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(description="1-3 letters or digits, unique case-insensitively")
    text: str = Field(min_length=1)

    @field_validator("label")
    @classmethod
    def _safe_label(cls, v: str) -> str:
        if not LABEL.fullmatch(v):
            raise ValueError(f"label {v[:20]!r} must be 1 to 3 letters or digits")
        return v


# A string or a {label, text} object, told apart by type so an error names one, not both.
ChoiceItem = Annotated[
    Annotated[str, Tag("text")] | Annotated[Choice, Tag("labelled")],
    Discriminator(lambda v: "text" if isinstance(v, str) else "labelled"),
]


class AnswerRequest(BaseModel):
    """``POST /v1/answer``. Limits come from the server's ``ServeConfig`` (checked in ``validate_limits``)."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="the question, without its choices")
    choices: list[ChoiceItem] = Field(
        description="answer choices: strings (labelled a, b, ... skipping given labels) or {label, text}"
    )
    votes: int | Literal["auto"] | None = Field(
        None,
        description='K sampled rationales to vote over, or "auto": draw votes in rounds and stop once the '
        "answer is settled (adaptive self-consistency), at most max_votes",
    )
    max_votes: int | None = Field(
        None, ge=1, description='cap of "auto" votes (default: the server\'s max_votes)'
    )
    temperature: float | None = Field(None, ge=0, le=2)
    rationales: bool = Field(False, description="return every rationale with its parsed answer")

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question must not be empty")
        return v.strip()

    @field_validator("choices")
    @classmethod
    def _unique_labels(cls, v: list[str | Choice]) -> list[str | Choice]:
        given = [c.label for c in v if isinstance(c, Choice)]
        if len({lab.lower() for lab in given}) != len(given):
            raise ValueError(f"choice labels must be unique (ignoring case), got {given}")
        return v

    def labels(self) -> list[str]:
        """Each choice's label: its own, or the next letter no given label uses (in any case)."""
        taken = {c.label.lower() for c in self.choices if isinstance(c, Choice)}
        free = iter(ch for ch in string.ascii_lowercase if ch not in taken)
        return [c.label if isinstance(c, Choice) else next(free, "?") for c in self.choices]

    def validate_limits(self, cfg: ServeConfig) -> list[tuple[str, str]]:
        """``(field, problem)`` for each way this request breaks the server's limits (empty when fine)."""
        errors = []
        if len(self.question) > cfg.max_question_chars:
            errors.append(
                (
                    "question",
                    f"question is {len(self.question)} characters; the limit is {cfg.max_question_chars}",
                )
            )
        if not 2 <= len(self.choices) <= cfg.max_choices:
            errors.append(
                (
                    "choices",
                    f"{len(self.choices)} choices given; between 2 and {cfg.max_choices} are accepted",
                )
            )
        for i, c in enumerate(self.choices):
            text = c.text if isinstance(c, Choice) else c
            if not text.strip():
                errors.append((f"choices.{i}", f"choice {i} is empty"))
            elif len(text) > cfg.max_choice_chars:
                errors.append(
                    (
                        f"choices.{i}",
                        f"choice {i} is {len(text)} characters; the limit is {cfg.max_choice_chars}",
                    )
                )
            elif not text.strip().isprintable():  # a line break would forge the prompt's layout
                errors.append((f"choices.{i}", f"choice {i} contains a line break or control character"))
        if self.votes == "auto":
            cap = self.max_votes or cfg.max_votes
            if cap > cfg.max_votes:
                errors.append(("max_votes", f"max_votes must be at most {cfg.max_votes}, got {cap}"))
        else:
            k = self.votes if self.votes is not None else cfg.default_votes
            if not 1 <= k <= cfg.max_votes:
                errors.append(("votes", f"votes must be between 1 and {cfg.max_votes}, got {k}"))
            if self.max_votes is not None:
                errors.append(("max_votes", 'max_votes caps "auto" votes; with a fixed K, give votes alone'))
        return errors

    def sampling(self, cfg: ServeConfig) -> tuple[int, float, bool]:
        """``(K, temperature, adaptive)`` to generate with: greedy decoding is one rationale, voted
        once; ``adaptive``: K is the cap, drawn in rounds until the vote is settled."""
        temperature = cfg.default_temperature if self.temperature is None else self.temperature
        if is_greedy(temperature):
            return 1, 0.0, False
        if self.votes == "auto":
            return self.max_votes or cfg.max_votes, temperature, True
        return (self.votes if self.votes is not None else cfg.default_votes), temperature, False

    def example(self, task: str) -> Example:
        pairs = [
            (label, (c.text if isinstance(c, Choice) else c).strip())
            for label, c in zip(self.labels(), self.choices, strict=True)
        ]
        return Example(id="request", task=task, split="serve", question=self.question, choices=tuple(pairs))


def prompt_problem(prompt_tokens: int, *, max_prompt_tokens: int, context_length: int) -> str | None:
    """Why a prompt of ``prompt_tokens`` cannot be served (``None`` when it can)."""
    if prompt_tokens > max_prompt_tokens:
        return f"the prompt is {prompt_tokens} tokens; this server accepts at most {max_prompt_tokens}"
    if prompt_tokens >= context_length:
        return f"the prompt is {prompt_tokens} tokens; the model's context is {context_length} tokens"
    return None


def parse_all(example: Example, generations: list[Generation], label_only: bool) -> list[ParsedAnswer]:
    parse = parse_label_only if label_only else parse_choices
    return [parse(g.text, example.choices) for g in generations]


def answer(
    example: Example, generations: list[Generation], *, label_only: bool, with_rationales: bool, model: str
) -> dict[str, Any]:
    """Parse and vote K generations into the ``/v1/answer`` response body."""
    parsed = parse_all(example, generations, label_only)
    result = vote([p.label for p in parsed])
    body: dict[str, Any] = {
        "answer": result.label,
        "answer_text": example.choice_text(result.label) if result.label is not None else None,
        "confidence": round(result.share, 4),
        "votes": result.counts,
        "unparseable": result.n_unparseable,
        "samples": result.n_samples,
        "model": model,
    }
    if with_rationales:
        body["rationales"] = [
            {"text": g.text, "answer": p.label, "parse_error": p.reason}
            for g, p in zip(generations, parsed, strict=True)
        ]
    return body


def prompt_for(example: Example) -> str:
    return prompts.student_prompt(example)


def chat_prompt(messages: list[dict[str, Any]]) -> str:
    """The last user message as a student prompt: used as-is when it is already ``Q: ...``."""
    content = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    content = content.strip()
    if not content:
        raise ValueError("messages must contain a non-empty user message")
    if not content.startswith("Q:"):
        content = f"Q: {content}"
    return f"{content} " if content.endswith("A:") else f"{content}\nA: "
