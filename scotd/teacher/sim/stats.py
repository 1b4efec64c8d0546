"""What the server did and billed, for ``GET /stats``: proof that a client never paid twice.

A request's identity is its ``Idempotency-Key`` header when present, else the sha256 of its JSON
body with sorted keys; a batch line's is ``key:<custom_id>``, the same as an online request sent
with ``Idempotency-Key: <custom_id>``. ``repeated_paid_requests`` counts billings (online 200s and
batch lines) whose identity had already been billed: a client that resumes and retries correctly
keeps it at 0. ``lines_billed_twice`` counts those repeats in which a batch line took part (a line
billed again in a batch, or a key billed online and in a batch, in either order).

Billing is split by route (``by_route.online`` / ``by_route.batch``): requests, prompt tokens
served from the prompt cache (``prompt_cached``) and not (``prompt_uncached``), completion
tokens, and ``cost_usd`` = route factor x (uncached x prompt price + cached x prompt price x
(1 - ``cached_input_discount``) + completion x completion price) / 1000, where the route factor is
1 online and 1 - ``batch_discount`` in batches. Top-level ``cost_usd`` is their sum; ``tokens``
(prompt, completion, total) counts both routes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scotd.teacher.sim.config import FAULTS

# "replay": a repeated Idempotency-Key answered from the stored response, unbilled. Billed odd
# shapes (``usage_missing`` ...) count under their own name, not under "ok", and are paid.
OUTCOMES = ("ok", "replay", "429", "400", "401", "404", "405", "413", *FAULTS)

Route = Literal["online", "batch"]


def request_identity(idempotency_key: str | None, body: Any) -> str:
    if idempotency_key:
        return "key:" + idempotency_key
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "body:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prices:
    """USD per 1k tokens and the two discounts (fractions off), from ``TeacherSimConfig``."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0
    batch_discount: float = 0.5
    cached_input_discount: float = 0.5

    def cost(self, route: Route, uncached: int, cached: int, completion: int) -> float:
        factor = 1.0 - self.batch_discount if route == "batch" else 1.0
        prompt = (uncached + cached * (1.0 - self.cached_input_discount)) * self.prompt_per_1k
        return factor * (prompt + completion * self.completion_per_1k) / 1000.0


@dataclass
class RouteTally:
    billed: int = 0
    prompt_uncached: int = 0
    prompt_cached: int = 0
    completion: int = 0


class Stats:
    """Counters since start (or the last ``reset``); single-threaded use from the event loop."""

    def __init__(self, prices: Prices | None = None) -> None:
        self.prices = prices or Prices()
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.backends: dict[str, int] = {}
        self.routes: dict[Route, RouteTally] = {"online": RouteTally(), "batch": RouteTally()}
        self.repeated_paid_requests = 0
        self.lines_billed_twice = 0
        self.batches_created = 0
        self._billed: dict[str, bool] = {}  # identity -> billed in a batch at least once

    @property
    def paid_requests(self) -> int:
        return self.routes["online"].billed + self.routes["batch"].billed

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_uncached + t.prompt_cached for t in self.routes.values())

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion for t in self.routes.values())

    def record(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def bill(
        self,
        identity: str,
        backend: str,
        prompt_tokens: int,
        completion_tokens: int,
        outcome: str = "ok",
        *,
        cached_tokens: int = 0,
        route: Route = "online",
    ) -> None:
        """Count one billed answer: an online 200 (``outcome``: "ok" or a billed odd shape, also
        counted in ``outcomes``) or a batch line (not an HTTP response: no outcome)."""
        if route == "online":
            self.record(outcome)
        self.backends[backend] = self.backends.get(backend, 0) + 1
        tally = self.routes[route]
        tally.billed += 1
        tally.prompt_cached += cached_tokens
        tally.prompt_uncached += prompt_tokens - cached_tokens
        tally.completion += completion_tokens
        in_batch = route == "batch"
        seen_in_batch = self._billed.get(identity)
        if seen_in_batch is not None:
            self.repeated_paid_requests += 1
            if in_batch or seen_in_batch:
                self.lines_billed_twice += 1
        self._billed[identity] = bool(seen_in_batch) or in_batch

    def cost_usd(self, route: Route) -> float:
        t = self.routes[route]
        return self.prices.cost(route, t.prompt_uncached, t.prompt_cached, t.completion)

    def snapshot(self) -> dict[str, Any]:
        cached = sum(t.prompt_cached for t in self.routes.values())
        return {
            "since": self.since,
            "requests": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "backends": dict(self.backends),
            "paid_requests": self.paid_requests,
            "online_requests_billed": self.routes["online"].billed,
            "batch_lines_billed": self.routes["batch"].billed,
            "batches_created": self.batches_created,
            "repeated_paid_requests": self.repeated_paid_requests,
            "lines_billed_twice": self.lines_billed_twice,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
                "prompt_cached": cached,
                "prompt_uncached": self.prompt_tokens - cached,
            },
            "by_route": {
                route: {**asdict(tally), "cost_usd": self.cost_usd(route)}
                for route, tally in self.routes.items()
            },
            "cost_usd": self.cost_usd("online") + self.cost_usd("batch"),
        }

    def summary(self) -> str:
        busy = ", ".join(f"{k}={v}" for k, v in self.outcomes.items() if v)
        return (
            f"{sum(self.outcomes.values())} requests ({busy or 'none'}); paid {self.paid_requests} "
            f"({self.routes['batch'].billed} batch lines), repeated {self.repeated_paid_requests}; "
            f"tokens {self.prompt_tokens + self.completion_tokens}; "
            f"cost ${self.cost_usd('online') + self.cost_usd('batch'):.4f}"
        )
