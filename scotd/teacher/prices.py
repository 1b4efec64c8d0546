"""Per-1k-token prices (USD) used for cost estimates, the ``max_cost_usd`` cap and the cost split.

Defaults for a few common models: (prompt, cached prompt, completion) per 1k tokens, from the
providers' published price lists (OpenAI, 2025). A config's explicit prices (prompt and completion
both, or neither; the cached price optionally) override them. An unknown model has no price:
without a cost cap its cost shows as $0 (a warning says so); with one, ``SampleConfig`` refuses it
before any call.

Two discounts, both as the providers bill them:

- *cached input*: prompt tokens the provider served from its prompt cache
  (``usage.prompt_tokens_details.cached_tokens``) cost ``cached_prompt_per_1k`` instead of
  ``prompt_per_1k`` (OpenAI: 50% for the gpt-4o family, 25% for gpt-4.1; caching starts at
  ``CACHE_MIN_TOKENS`` prompt tokens, in steps of ``CACHE_INCREMENT_TOKENS``);
- *batch*: every token of a request sent through a batch API costs ``batch_discount`` (0.5) of the
  online price, cached input included.
"""

from __future__ import annotations

from dataclasses import dataclass

# The provider caches prompts of at least this many tokens, in steps of the increment (OpenAI).
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT_TOKENS = 128
BATCH_DISCOUNT = 0.5

# model: (prompt, cached prompt, completion), USD per 1k tokens. None: no cached-input discount.
DEFAULT_PRICES_PER_1K: dict[str, tuple[float, float | None, float]] = {
    "gpt-4o": (0.0025, 0.00125, 0.01),
    "gpt-4o-mini": (0.00015, 0.000075, 0.0006),
    "gpt-4.1": (0.002, 0.0005, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0001, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.000025, 0.0004),
    "gpt-3.5-turbo-instruct": (0.0015, None, 0.002),
    "davinci-002": (0.002, None, 0.002),
    "babbage-002": (0.0004, None, 0.0004),
    # The embedded teacher is free; price it in the config to rehearse a budget.
    "scotd-teacher-sim": (0.0, None, 0.0),
}


@dataclass(frozen=True)
class Price:
    prompt_per_1k: float
    completion_per_1k: float
    known: bool = True
    cached_prompt_per_1k: float | None = None  # None: cached input costs the full prompt price
    batch_discount: float = BATCH_DISCOUNT

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, batch: bool = False
    ) -> float:
        """USD for one answer: uncached + cached prompt tokens and completion tokens, online or batch."""
        return sum(self.split(prompt_tokens, completion_tokens, cached_tokens, batch).values())

    def split(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, batch: bool = False
    ) -> dict[str, float]:
        """The cost in parts: ``uncached_input``, ``cached_input``, ``output`` (USD)."""
        cached = max(0, min(cached_tokens, prompt_tokens))
        cached_rate = self.prompt_per_1k if self.cached_prompt_per_1k is None else self.cached_prompt_per_1k
        scale = self.batch_discount if batch else 1.0
        return {
            "uncached_input": (prompt_tokens - cached) * self.prompt_per_1k * scale / 1000.0,
            "cached_input": cached * cached_rate * scale / 1000.0,
            "output": completion_tokens * self.completion_per_1k * scale / 1000.0,
        }


def cacheable_tokens(
    shared_prefix_tokens: int, min_tokens: int = CACHE_MIN_TOKENS, increment: int = CACHE_INCREMENT_TOKENS
) -> int:
    """The part of a shared prompt prefix a provider can serve from its cache (0 below the minimum)."""
    if shared_prefix_tokens < min_tokens:
        return 0
    return shared_prefix_tokens // increment * increment


def price_for(
    model: str,
    prompt_per_1k: float | None = None,
    completion_per_1k: float | None = None,
    cached_prompt_per_1k: float | None = None,
    batch_discount: float = BATCH_DISCOUNT,
) -> Price:
    """Explicit prices win; else the table (longest matching model-name prefix); else unknown.

    Raises ``ValueError`` when only one of the two explicit prices is given (half a price would
    make every completion, or every prompt, look free).
    """
    if (prompt_per_1k is None) != (completion_per_1k is None):
        raise ValueError("give both the prompt and the completion price per 1k tokens, or neither")
    if prompt_per_1k is not None and completion_per_1k is not None:
        return Price(prompt_per_1k, completion_per_1k, True, cached_prompt_per_1k, batch_discount)
    matches = [name for name in DEFAULT_PRICES_PER_1K if model == name or model.startswith(name + "-")]
    if not matches:
        return Price(0.0, 0.0, False, None, batch_discount)
    p, cached, c = DEFAULT_PRICES_PER_1K[max(matches, key=len)]
    return Price(p, c, True, cached if cached_prompt_per_1k is None else cached_prompt_per_1k, batch_discount)
