"""Client-side rate limiting and budget: one instance per teacher endpoint, shared cluster-wide.

``RateLimiter`` is plain asyncio (unit-testable without Ray); ``sampling.actors`` wraps it in one
named Ray actor so every sampler on every node draws from the same budgets.

Pacing is a token bucket per limit (requests and tokens) that may go into debt: a call is
admitted as soon as both buckets are non-negative, then pays its *estimated* tokens; when the
response arrives the estimate is reconciled with the real ``usage`` (the difference is refunded).
Buckets refill at ``safety × limit`` and hold at most ``burst_s`` seconds of credit, so over any
provider window the client sends at most ``safety × limit + burst`` — below the limit, yet close
enough that the provider's limit, not the client, sets throughput. A 429 pauses every caller for
the provider's ``Retry-After`` and, because providers often enforce limits over windows shorter
than a minute (where "95% + one request" can overflow), also cuts the pace by 10% (never below
half) and drops saved credit; each paid answer then wins back 0.05% of the limit, up to
``safety`` — additive increase, multiplicative decrease. Limits come from the config or, when unset, from the provider's
``x-ratelimit-limit-*`` headers; until those arrive only one call is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

Decision = Literal["granted", "budget", "aborted"]
DECREASE = 0.9  # pace multiplier after a 429
INCREASE = 0.0005  # pace regained per paid answer, as a fraction of the ceiling


@dataclass
class Bucket:
    """A debt-allowed token bucket: ``level`` refills at ``rate``/s up to ``capacity``.

    ``rate`` moves between ``ceiling / 2`` and ``ceiling`` (= safety x limit): down 10% on a 429,
    up by ``ceiling x INCREASE`` per paid answer.
    """

    rate: float
    capacity: float
    level: float = 0.0
    stamp: float = field(default_factory=time.monotonic)
    ceiling: float = 0.0

    def slow_down(self, now: float) -> None:
        self.refill(now)
        self.rate = max(self.ceiling / 2, self.rate * DECREASE)
        self.level = min(self.level, 0.0)

    def speed_up(self) -> None:
        self.rate = min(self.ceiling, self.rate + self.ceiling * INCREASE)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, now: float) -> float:
        """Seconds until the level is back to zero (0 when it already is)."""
        self.refill(now)
        return 0.0 if self.level >= 0 else -self.level / self.rate


@dataclass(frozen=True)
class Grant:
    decision: Decision
    grant_id: int = -1
    waited_s: float = 0.0
    reason: str = ""


@dataclass
class LimiterStats:
    granted: int = 0
    completed: int = 0
    rate_limited: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    reserved_cost_usd: float = 0.0
    reserved_tokens: int = 0
    paused_s: float = 0.0
    waited_s: float = 0.0
    rpm_limit: float = 0.0
    tpm_limit: float = 0.0
    started_at: float = field(default_factory=time.time)
    first_grant_at: float = 0.0
    last_ok_at: float = 0.0
    ok: int = 0
    aborted: str = ""
    budget_stopped: str = ""


class RateLimiter:
    """Shared RPM/TPM pacing plus a cost/token budget. All methods are safe under asyncio."""

    def __init__(
        self,
        *,
        rpm: float = 0.0,
        tpm: float = 0.0,
        safety: float = 0.95,
        burst_s: float = 1.0,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
    ) -> None:
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self.safety = safety
        self.burst_s = burst_s
        self.max_cost_usd = max_cost_usd
        self.max_total_tokens = max_total_tokens
        self.stats = LimiterStats()
        self._requests: Bucket | None = None
        self._tokens: Bucket | None = None
        self._learn = rpm <= 0 and tpm <= 0  # learn limits from the provider's headers
        self._set_limits(rpm, tpm)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._reservations: dict[int, tuple[int, float]] = {}
        self._next_id = 0
        self._learned = asyncio.Event()
        self._changed = asyncio.Event()  # set when a refund, a 429 or new limits may change a wait
        self._slowed_until = 0.0  # one 429 burst (calls already in flight) is one slow-down

    def _set_limits(self, rpm: float, tpm: float) -> None:
        now = time.monotonic()
        self.stats.rpm_limit, self.stats.tpm_limit = rpm, tpm
        self._requests = self._bucket(rpm, now)
        self._tokens = self._bucket(tpm, now)

    def _bucket(self, per_minute: float, now: float) -> Bucket | None:
        if per_minute <= 0:
            return None
        rate = self.safety * per_minute / 60.0
        # Start empty: no burst at start-up, a full provider window must pass before any credit.
        return Bucket(rate=rate, capacity=max(rate * self.burst_s, 1.0), level=0.0, stamp=now, ceiling=rate)

    async def acquire(self, est_tokens: int, est_cost_usd: float = 0.0) -> Grant:
        """Wait until a call with this estimate may be sent; reserve its tokens and cost.

        FIFO: callers are admitted in arrival order. Returns ``budget`` (not admitted) when the
        call could overshoot ``max_cost_usd`` / ``max_total_tokens`` counting what is in flight,
        and ``aborted`` after ``abort()``.
        """
        start = time.monotonic()
        async with self._lock:
            while True:
                if self.stats.aborted:
                    return Grant("aborted", reason=self.stats.aborted)
                over = self._over_budget(est_tokens, est_cost_usd)
                if over:
                    self.stats.budget_stopped = over
                    return Grant("budget", reason=over)
                now = time.monotonic()
                wait = max(
                    self._paused_until - now,
                    self._requests.wait_s(now) if self._requests else 0.0,
                    self._tokens.wait_s(now) if self._tokens else 0.0,
                )
                if self._learn and self.stats.in_flight > 0 and not self._learned.is_set():
                    # Limits unknown yet: one call at a time until the provider tells us.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._learned.wait(), timeout=1.0)
                    continue
                if wait <= 0:
                    break
                # Wake early when a refund arrives (the wait was computed on the full estimate);
                # re-check at least every second, as a 429 may extend the pause meanwhile.
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(wait, 1.0))
            now = time.monotonic()
            if self._requests:
                self._requests.level -= 1
            if self._tokens:
                self._tokens.level -= est_tokens
            self._next_id += 1
            self._reservations[self._next_id] = (est_tokens, est_cost_usd)
            self.stats.granted += 1
            self.stats.first_grant_at = self.stats.first_grant_at or time.time()
            self.stats.in_flight += 1
            self.stats.reserved_tokens += est_tokens
            self.stats.reserved_cost_usd += est_cost_usd
            waited = time.monotonic() - start
            self.stats.waited_s += waited
            return Grant("granted", self._next_id, waited)

    def _over_budget(self, est_tokens: int, est_cost: float) -> str:
        s = self.stats
        if self.max_cost_usd is not None and s.cost_usd + s.reserved_cost_usd + est_cost > self.max_cost_usd:
            return (
                f"cost cap reached: ${s.cost_usd:.4f} spent + ${s.reserved_cost_usd:.4f} in flight; the next call "
                f"could cost ${est_cost:.4f} and max_cost_usd is ${self.max_cost_usd:.4f}"
            )
        used = s.prompt_tokens + s.completion_tokens
        if (
            self.max_total_tokens is not None
            and used + s.reserved_tokens + est_tokens > self.max_total_tokens
        ):
            return (
                f"token cap reached: {used} used + {s.reserved_tokens} in flight; the next call could use "
                f"{est_tokens} and max_total_tokens is {self.max_total_tokens}"
            )
        return ""

    def complete(
        self, grant_id: int, prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0
    ) -> None:
        """Reconcile a call's reservation with what it really used (zeros when it was not billed)."""
        est_tokens, est_cost = self._reservations.pop(grant_id, (0, 0.0))
        actual = prompt_tokens + completion_tokens
        if self._tokens:
            self._tokens.refill(time.monotonic())
            self._tokens.level = min(self._tokens.capacity, self._tokens.level + est_tokens - actual)
        s = self.stats
        s.in_flight = max(0, s.in_flight - 1)
        s.completed += 1
        s.reserved_tokens -= est_tokens
        s.reserved_cost_usd = max(0.0, s.reserved_cost_usd - est_cost)
        s.prompt_tokens += prompt_tokens
        s.completion_tokens += completion_tokens
        s.cost_usd += cost_usd
        if actual > 0:
            s.ok += 1
            s.last_ok_at = time.time()
            for bucket in (self._requests, self._tokens):
                if bucket:
                    bucket.speed_up()
        self._changed.set()

    def rate_limited(self, retry_after_s: float) -> None:
        """A 429 arrived: pause every caller for ``retry_after_s``."""
        self.stats.rate_limited += 1
        now = time.monotonic()
        until = now + max(0.0, retry_after_s)
        if until > self._paused_until:
            self.stats.paused_s += until - max(now, self._paused_until)
            self._paused_until = until
        if now >= self._slowed_until:
            # The other calls in flight at this moment may hit the same full window: slow down
            # once for all of them, not once each.
            self._slowed_until = now + max(1.0, retry_after_s)
            for bucket in (self._requests, self._tokens):
                if bucket:
                    bucket.slow_down(now)
        self._changed.set()

    def observe_limits(self, rpm: float, tpm: float) -> None:
        """Provider-reported limits (``x-ratelimit-limit-*``, 0 when absent) from a first response.

        Used only when none were configured; a provider that reports none is not limited here.
        """
        if self._learn and not self._learned.is_set():
            self._set_limits(rpm, tpm)
            self._learned.set()
            self._changed.set()

    def abort(self, reason: str) -> None:
        """Stop admitting calls for good (bad credentials): every waiter returns ``aborted``."""
        self.stats.aborted = self.stats.aborted or reason

    def snapshot(self) -> dict[str, float | int | str]:
        return asdict(self.stats)
