"""What the server did and billed, for ``GET /stats``: proof that a client never paid twice.

A request's identity is its ``Idempotency-Key`` header when present, else the sha256 of its JSON
body with sorted keys. ``repeated_paid_requests`` counts billed (200 OK) requests whose identity
had already been billed: a client that resumes and retries correctly keeps it at 0.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from scotd.teacher.sim.config import FAULTS

# "replay": a repeated Idempotency-Key answered from the stored response, unbilled. Billed odd
# shapes (``usage_missing`` ...) count under their own name, not under "ok", and are paid.
OUTCOMES = ("ok", "replay", "429", "400", "401", "404", "405", "413", *FAULTS)


def request_identity(idempotency_key: str | None, body: Any) -> str:
    if idempotency_key:
        return "key:" + idempotency_key
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "body:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Stats:
    """Counters since start (or the last ``reset``); single-threaded use from the event loop."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.backends: dict[str, int] = {}
        self.paid_requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.repeated_paid_requests = 0
        self._billed: set[str] = set()

    def record(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def bill(
        self, identity: str, backend: str, prompt_tokens: int, completion_tokens: int, outcome: str = "ok"
    ) -> None:
        """Count one billed 200 response (``outcome``: "ok" or a billed odd shape) and its tokens."""
        self.record(outcome)
        self.backends[backend] = self.backends.get(backend, 0) + 1
        self.paid_requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if identity in self._billed:
            self.repeated_paid_requests += 1
        self._billed.add(identity)

    def snapshot(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "requests": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "backends": dict(self.backends),
            "paid_requests": self.paid_requests,
            "repeated_paid_requests": self.repeated_paid_requests,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
            },
        }

    def summary(self) -> str:
        busy = ", ".join(f"{k}={v}" for k, v in self.outcomes.items() if v)
        return (
            f"{sum(self.outcomes.values())} requests ({busy or 'none'}); paid {self.paid_requests}, "
            f"repeated {self.repeated_paid_requests}; tokens {self.prompt_tokens + self.completion_tokens}"
        )
