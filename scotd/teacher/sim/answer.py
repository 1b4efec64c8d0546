"""One answer to a validated request, shared by the online routes and batch lines.

``draft`` has the teacher write ``n`` samples, applies the provider's ``stop`` / ``max_tokens``
cut and draws the log-probs asked for; the caller then admits it (online: the RPM/TPM window),
asks the prompt cache for ``cached_tokens`` and builds the body with ``Draft.body``. A request
with a ``seed`` is sampled from its own RNG (same seed and prompt, same samples); others draw
from the server's sample stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from scotd.teacher.sim.backends import BackendUsed, Teacher
from scotd.teacher.sim.openai_api import GenRequest, response_body
from scotd.teacher.sim.textops import Cut, chat_logprobs, completion_logprobs, cut, token_logprobs


@dataclass(frozen=True)
class Draft:
    """The cut samples of one request (and their log-probs), before they are billed."""

    req: GenRequest
    backend: BackendUsed
    cuts: list[Cut]
    logprobs: list[dict[str, Any] | None]

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.cuts)

    @property
    def longest_tokens(self) -> int:
        return max((len(c.tokens) for c in self.cuts), default=0)

    def body(self, cached_tokens: int) -> dict[str, Any]:
        return response_body(self.req, self.cuts, self.logprobs, cached_tokens)


def draft(teacher: Teacher, req: GenRequest, sample_rng: random.Random) -> Draft:
    rng = random.Random(f"seed:{req.seed}:{req.prompt}") if req.seed is not None else sample_rng
    generation = teacher.generate(req.prompt, req.n, req.temperature, rng, run_on=not req.chat)
    cuts = [cut(s.text, req.stop, req.max_tokens) for s in generation.samples]
    logprobs: list[dict[str, Any] | None] = [None] * len(cuts)
    if req.top_logprobs is not None:
        build = chat_logprobs if req.chat else completion_logprobs
        logprobs = [
            build(
                c.tokens,
                token_logprobs(c.tokens, random.Random(s.logprob_seed), s.mean_nll),
                req.top_logprobs,
            )
            for c, s in zip(cuts, generation.samples, strict=True)
        ]
    return Draft(req, generation.backend, cuts, logprobs)
