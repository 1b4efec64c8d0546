"""Tokens, stop sequences, ``max_tokens`` and simulated log-probs, applied as a provider would.

Tokenizer (deterministic, documented so clients can predict usage): a token is a word (``\\w+``)
or one punctuation mark, together with the whitespace before it; whitespace at the very end is a
token of its own. Tokens concatenate back to the text exactly, so ``max_tokens`` cuts on token
boundaries and ``text_offset`` (0-based, into the returned text) points at each token.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
# Tokens offered as the runners-up in top_logprobs.
_ALTERNATIVES = (" the", " so", ".", " and", " is", ",", " a", " of")

FinishReason = Literal["stop", "length"]


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


@dataclass(frozen=True)
class Cut:
    """A generation after the provider's stop sequences and ``max_tokens`` were applied."""

    text: str
    tokens: list[str]
    finish_reason: FinishReason


def cut(text: str, stop: Sequence[str], max_tokens: int | None) -> Cut:
    """Cut ``text`` at the first occurrence of any stop sequence (excluded), then at ``max_tokens``.

    ``finish_reason`` is "length" when ``max_tokens`` cut the text before a stop sequence or its
    natural end, else "stop".
    """
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if hits:
        text = text[: min(hits)]
    tokens = tokenize(text)
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        return Cut("".join(tokens), tokens, "length")
    return Cut(text, tokens, "stop")


def token_logprobs(tokens: Sequence[str], rng: random.Random, mean_nll: float) -> list[float]:
    """One log-prob per token: ``-Exponential(mean_nll)``, so a chain's mean is about ``-mean_nll``."""
    return [-round(rng.expovariate(1.0 / mean_nll), 4) for _ in tokens]


def _alternatives(token: str, logprob: float, k: int) -> list[tuple[str, float]]:
    """``k`` runners-up below ``token`` whose probabilities fit in what ``token`` leaves (sum <= 1)."""
    rest = max(1e-6, 1.0 - math.exp(logprob))
    alts = [a for a in _ALTERNATIVES if a != token][:k]
    return [(alt, round(math.log(rest * 0.5 ** (j + 1)), 4)) for j, alt in enumerate(alts)]


def completion_logprobs(tokens: Sequence[str], logprobs: Sequence[float], top: int) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object: tokens, token_logprobs, top_logprobs, text_offset."""
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok)
    top_lists = [
        dict([(tok, lp), *_alternatives(tok, lp, top - 1)]) if top > 0 else {}
        for tok, lp in zip(tokens, logprobs, strict=True)
    ]
    return {
        "tokens": list(tokens),
        "token_logprobs": list(logprobs),
        "top_logprobs": top_lists,
        "text_offset": offsets,
    }


def _chat_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(tokens: Sequence[str], logprobs: Sequence[float], top: int) -> dict[str, Any]:
    """The chat ``logprobs`` object: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal"}``."""
    content = []
    for tok, lp in zip(tokens, logprobs, strict=True):
        runners = [(tok, lp), *_alternatives(tok, lp, top - 1)] if top > 0 else []
        content.append({**_chat_entry(tok, lp), "top_logprobs": [_chat_entry(t, p) for t, p in runners]})
    return {"content": content, "refusal": None}
