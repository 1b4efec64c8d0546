"""Per-1k-token prices (USD) used for cost estimates and the ``max_cost_usd`` cap.

Defaults for a few common models, as (prompt, completion) per 1k tokens; a config's explicit
prices (both or neither) override them. An unknown model has no price: without a cost cap its
cost shows as $0 (a warning says so); with one, ``SampleConfig`` refuses it before any call.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PRICES_PER_1K: dict[str, tuple[float, float]] = {
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-3.5-turbo-instruct": (0.0015, 0.002),
    "davinci-002": (0.002, 0.002),
    "babbage-002": (0.0004, 0.0004),
    # The embedded teacher is free; price it in the config to rehearse a budget.
    "scotd-teacher-sim": (0.0, 0.0),
}


@dataclass(frozen=True)
class Price:
    prompt_per_1k: float
    completion_per_1k: float
    known: bool = True

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_1k + completion_tokens * self.completion_per_1k) / 1000.0


def price_for(
    model: str, prompt_per_1k: float | None = None, completion_per_1k: float | None = None
) -> Price:
    """Explicit prices win; else the table (longest matching model-name prefix); else unknown.

    Raises ``ValueError`` when only one of the two explicit prices is given (half a price would
    make every completion, or every prompt, look free).
    """
    if (prompt_per_1k is None) != (completion_per_1k is None):
        raise ValueError("give both the prompt and the completion price per 1k tokens, or neither")
    if prompt_per_1k is not None and completion_per_1k is not None:
        return Price(prompt_per_1k, completion_per_1k)
    matches = [name for name in DEFAULT_PRICES_PER_1K if model == name or model.startswith(name + "-")]
    if not matches:
        return Price(0.0, 0.0, known=False)
    p, c = DEFAULT_PRICES_PER_1K[max(matches, key=len)]
    return Price(p, c)
