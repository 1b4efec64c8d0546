"""Client-side rate limiting and budget: one instance per teacher endpoint, shared cluster-wide.

``RateLimiter`` is plain asyncio (unit-testable without Ray, with an injectable clock and a
non-blocking ``try_acquire``);
``sample.actors`` wraps it in one named Ray actor so every sampler on every node draws from the
same budgets.

A call is admitted when both limits (requests, tokens) let it through. Each limit is gated by
what the provider reports free (its window) when it reports it, else by a pacing bucket; after a
429, by both.

*What the provider says is free* (``use_remaining``, on by default). Every answer's
``x-ratelimit-limit-*``, ``-remaining-*`` and ``-reset-*`` headers (``RateHeaders``; durations
in OpenAI's ``1s`` / ``6m0s`` / ``20ms`` / ``1h2m3.5s`` forms or plain seconds; anything that does
not parse is ignored) feed a ``ProviderWindow`` per limit, kept in *positions*: ``pos`` counts
what this limiter has granted so far (requests, or estimated tokens), and a call is admitted
while ``pos + need <= allowance``. Every step only ever uses lower bounds of what is free:

- scale: providers report per-minute units even when they count over a shorter window (the
  embedded teacher scales ``remaining`` by ``60 / window_s``), so the units one of our requests
  costs is learnt as the smallest of ``(limit - remaining) / billed`` over billed answers (the
  answer itself is in the window) and ``60 / reset`` (a window is never longer than its reset
  time); ``capacity = limit / scale`` is one window in our units;
- an answer saying ``remaining`` raises the allowance to ``key + remaining / scale``. The key
  is what we had granted less every call the provider may not have counted when it wrote the
  report: all calls still in flight, and all calls whose answers were received after this one
  (``RateHeaders.age_s``: callers say how long ago they received it, so a report passed on late
  is placed when it was received). A stale or reordered report therefore only ever admits less
  (it can never admit more than the provider had free minus what was sent since);
- ``reset`` says when everything the provider had counted is out of its window: at
  ``now + reset`` (plus 0.2% and 20 ms) the allowance rises to ``key + capacity`` (the same
  key). This is the refill: a window's worth comes back when the provider's own window frees it,
  whether it slides, is fixed or refills continuously (OpenAI's ``reset`` is the time to refill
  completely);
- a call needs 1 request and its *estimated* tokens (at most one window's): estimates are upper
  bounds, so the tokens window never lends on a refund it has not seen reported;
- the first call is a probe (with no configured limit, only one call is in flight until an answer
  arrives); once an answer reports room, every waiting caller is admitted into it at once. In the
  steady state each window is refilled as its reset comes due, so the limit, not the client, sets
  the pace (~100% of a sliding window's capacity);
- when nothing is in flight and no reset is pending the headers can say nothing new: the limiter
  falls back to pacing for that limit.

*Pacing*, as before headers existed, and whenever the provider sends no ``remaining`` header: a
token bucket per limit that may go into debt: a call is admitted as soon as both buckets are
non-negative, then pays its *estimated* tokens; when the response arrives the estimate is
reconciled with the real ``usage`` (the difference is refunded). Buckets refill at
``safety × limit`` and hold at most ``burst_s`` seconds of credit, so over any provider window
the client sends at most ``safety × limit + burst``. Limits come from the config or, when unset,
from the provider's ``x-ratelimit-limit-*`` headers; until those arrive only one call is in flight.

*429s*: a 429 pauses every caller for the provider's ``Retry-After``, drops every window's
allowance to what is granted (nothing free now) and, because providers often enforce limits over
windows shorter than they report (where "95% + one request" can overflow), cuts the pace by 10%
(never below half) and drops saved credit; each paid answer then wins back 0.05% of the limit,
up to ``safety`` — additive increase, multiplicative decrease. For one window length after a 429
(at least the ``Retry-After``) the headers are not trusted alone: a call needs both the header
allowance and the pacing bucket.

Budgets (``max_cost_usd``, ``max_total_tokens``) count what is spent plus what is reserved by
calls in flight, and are checked before either gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Decision = Literal["granted", "budget", "aborted"]
DECREASE = 0.9  # pace multiplier after a 429
INCREASE = 0.0005  # pace regained per paid answer, as a fraction of the ceiling
# A reset comes due this much after the provider said (its rounding, and clocks that drift apart).
RESET_MARGIN, RESET_SLACK_S = 1.002, 0.02
MAX_RESET_S = 3600.0  # a longer reset (a daily limit, garbage) schedules nothing
MAX_RESETS = 64  # pending resets kept per limit (dropping one only ever admits less)
MAX_ANSWERED = 4096  # answers remembered (when each was received) to place late reports
MIN_WAIT_S = 0.001
NEWS_POLL_S = 1.0  # waiting for an answer's headers: re-check at least this often
MAX_DISTRUST_S = 120.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0,
}  # fmt: skip


def parse_amount(value: Any) -> float | None:
    """A finite, non-negative number from a header value; ``None`` for anything else."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def parse_duration(value: Any) -> float | None:
    """Seconds from OpenAI's reset format (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain
    seconds (``1.5``); ``None`` for anything else (empty, negative, garbage, overflow)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().lower()
    if not text or len(text) > 64:
        return None
    plain = parse_amount(text)
    if plain is not None:
        return plain
    total, pos = 0.0, 0
    for _ in range(len(text)):  # each part is at least two characters long
        if pos == len(text):
            break
        part = _DURATION_PART.match(text, pos)
        if part is None:
            return None
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        pos = part.end()
    return total if pos == len(text) and math.isfinite(total) else None


@dataclass(frozen=True)
class RateHeaders:
    """The provider's ``x-ratelimit-*`` headers of one answer (``None``: absent or unreadable).

    ``limit_*`` are per-minute limits; ``remaining_*`` what is free now (in the same units);
    ``reset_*_s`` seconds until the limit is back to its initial state. ``read_at``: this
    process's ``time.monotonic()`` when the headers were read; ``age_s``: how long before the
    limiter is told (set by ``aged()`` in the process that read them: clocks of other nodes differ).
    """

    limit_requests: float | None = None
    limit_tokens: float | None = None
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    read_at: float = field(default=0.0, compare=False)
    age_s: float = field(default=0.0, compare=False)

    def aged(self) -> RateHeaders:
        """A copy saying how long ago (on this machine's clock) these headers were read."""
        return replace(self, age_s=max(0.0, time.monotonic() - self.read_at)) if self.read_at else self

    @classmethod
    def parse(cls, headers: Any) -> RateHeaders:
        """Read a header mapping (any case); never raises, ignores what does not parse."""
        try:
            found = {str(k).lower(): v for k, v in headers.items()} if headers is not None else {}
        except (AttributeError, TypeError, ValueError):
            return cls(read_at=time.monotonic())
        prefix = "x-ratelimit-"
        return cls(
            limit_requests=parse_amount(found.get(prefix + "limit-requests")),
            limit_tokens=parse_amount(found.get(prefix + "limit-tokens")),
            remaining_requests=parse_amount(found.get(prefix + "remaining-requests")),
            remaining_tokens=parse_amount(found.get(prefix + "remaining-tokens")),
            reset_requests_s=parse_duration(found.get(prefix + "reset-requests")),
            reset_tokens_s=parse_duration(found.get(prefix + "reset-tokens")),
            read_at=time.monotonic(),
        )


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


@dataclass
class ProviderWindow:
    """One provider limit as its headers describe it, in positions of what we granted.

    ``allowance``: a call needing ``need`` may go while ``pos + need <= allowance`` (``None``: no
    report yet). ``resets``: ``(at, key)`` pairs; at ``at`` the allowance may rise to
    ``capacity + key``. Only ever raised from lower bounds of what is free (see the module doc).
    """

    scale: float = math.inf  # provider units per unit of ours (inf: not learnt yet)
    limit: float = 0.0  # the provider's limit, in its units
    allowance: float | None = None
    resets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.allowance is not None and math.isfinite(self.scale)

    @property
    def capacity(self) -> float:
        """One window of the provider's, in our units."""
        return self.limit / self.scale if math.isfinite(self.scale) else 0.0

    def observe(
        self,
        now: float,
        key: float,
        limit: float | None,
        remaining: float | None,
        reset_s: float | None,
        billed: float,
    ) -> None:
        """An answer's report; ``billed``: what that answer cost in our units (0: not admitted)."""
        if limit is None or limit <= 0 or remaining is None:
            return
        remaining = min(remaining, limit)
        self.limit = limit
        if billed > 0 and limit - remaining > 0:
            self.scale = min(self.scale, (limit - remaining) / billed)  # that answer is in the window
        if reset_s is not None and reset_s > 0:
            self.scale = min(self.scale, 60.0 / reset_s)  # no window outlasts its reset time
        if not math.isfinite(self.scale):
            return
        self._raise(key + remaining / self.scale)
        if reset_s is not None and reset_s <= MAX_RESET_S:
            self._add_reset(now + reset_s * RESET_MARGIN + RESET_SLACK_S, key)

    def _raise(self, allowance: float) -> None:
        self.allowance = allowance if self.allowance is None else max(self.allowance, allowance)

    def _add_reset(self, at: float, key: float) -> None:
        if any(a <= at and k >= key for a, k in self.resets):
            return  # an earlier reset promises as much
        kept = [(a, k) for a, k in self.resets if not (a >= at and k <= key)]
        self.resets = sorted([*kept, (at, key)])[:MAX_RESETS]

    def apply_due(self, now: float) -> None:
        while self.resets and self.resets[0][0] <= now:
            _, key = self.resets.pop(0)
            self._raise(key + self.capacity)

    def clamp(self, pos: float) -> None:
        """A 429: nothing is free now, whatever the headers said."""
        if self.allowance is not None:
            self.allowance = min(self.allowance, pos)


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
    header_grants: int = 0  # admitted on the provider's reported room alone (no pacing bucket)
    aborted: str = ""
    budget_stopped: str = ""


class RateLimiter:
    """Shared RPM/TPM gates plus a cost/token budget. All methods are safe under asyncio."""

    def __init__(
        self,
        *,
        rpm: float = 0.0,
        tpm: float = 0.0,
        safety: float = 0.95,
        burst_s: float = 1.0,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
        use_remaining: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self.safety = safety
        self.burst_s = burst_s
        self.max_cost_usd = max_cost_usd
        self.max_total_tokens = max_total_tokens
        self.use_remaining = use_remaining
        self._clock = clock
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
        self._distrust_until = 0.0  # after a 429: header room needs the pacing bucket too
        self._window_requests = ProviderWindow()
        self._window_tokens = ProviderWindow()
        self._granted_tokens = 0.0  # position of the tokens window: estimated tokens granted so far
        # Recent answers: (told at, received at, estimated tokens), in the order we were told.
        self._answered: deque[tuple[float, float, int]] = deque(maxlen=MAX_ANSWERED)

    def _set_limits(self, rpm: float, tpm: float) -> None:
        now = self._clock()
        self.stats.rpm_limit, self.stats.tpm_limit = rpm, tpm
        self._requests = self._bucket(rpm, now)
        self._tokens = self._bucket(tpm, now)

    def _bucket(self, per_minute: float, now: float) -> Bucket | None:
        if per_minute <= 0:
            return None
        rate = self.safety * per_minute / 60.0
        # Start empty: no burst at start-up from pacing alone (the headers may grant one).
        return Bucket(rate=rate, capacity=max(rate * self.burst_s, 1.0), level=0.0, stamp=now, ceiling=rate)

    async def acquire(self, est_tokens: int, est_cost_usd: float = 0.0) -> Grant:
        """Wait until a call with this estimate may be sent; reserve its tokens and cost.

        FIFO: callers are admitted in arrival order. Returns ``budget`` (not admitted) when the
        call could overshoot ``max_cost_usd`` / ``max_total_tokens`` counting what is in flight,
        and ``aborted`` after ``abort()``.
        """
        start = self._clock()
        async with self._lock:
            while True:
                result = self.try_acquire(est_tokens, est_cost_usd)
                if isinstance(result, Grant):
                    if result.decision != "granted":
                        return result
                    waited = max(0.0, self._clock() - start)
                    self.stats.waited_s += waited
                    return Grant("granted", result.grant_id, waited)
                # Wake early when an answer arrives (a refund, the provider's headers); re-check
                # at least every second, as a 429 may extend the pause meanwhile.
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(result, 1.0))

    def try_acquire(self, est_tokens: int, est_cost_usd: float = 0.0) -> Grant | float:
        """``acquire`` without waiting: a ``Grant`` (any decision), or the seconds to wait before
        asking again. For callers that drive time themselves (a fake clock); not FIFO with
        ``acquire`` waiters."""
        if self.stats.aborted:
            return Grant("aborted", reason=self.stats.aborted)
        over = self._over_budget(est_tokens, est_cost_usd)
        if over:
            self.stats.budget_stopped = over
            return Grant("budget", reason=over)
        if self._learn and self.stats.in_flight > 0 and not self._learned.is_set():
            return NEWS_POLL_S  # limits unknown yet: one call at a time until the provider tells us
        now = self._clock()
        distrust = now < self._distrust_until
        waits = [self._paused_until - now]
        charge: list[tuple[Bucket, float]] = []
        gates = (
            (self._window_requests, self._requests, float(self._next_id), 1.0),
            (self._window_tokens, self._tokens, self._granted_tokens, float(est_tokens)),
        )
        for window, bucket, pos, cost in gates:
            wait, uses_bucket = self._gate(window, bucket, pos, cost, now, distrust)
            waits.append(wait)
            if uses_bucket and bucket is not None:
                charge.append((bucket, cost))
        if max(waits) > 0:
            return max(MIN_WAIT_S, max(waits))  # never a wait too short to move a clock
        for bucket, cost in charge:
            bucket.level -= cost
        if not charge and (self._window_requests.known or self._window_tokens.known):
            self.stats.header_grants += 1
        return self._grant(est_tokens, est_cost_usd)

    def _gate(
        self,
        window: ProviderWindow,
        bucket: Bucket | None,
        pos: float,
        cost: float,
        now: float,
        distrust: bool,
    ) -> tuple[float, bool]:
        """(seconds to wait, whether the pacing bucket pays) for one limit."""
        if not (self.use_remaining and window.known):
            return (bucket.wait_s(now) if bucket else 0.0), bucket is not None
        window.apply_due(now)
        assert window.allowance is not None
        need = min(cost, window.capacity)
        if window.allowance - pos >= need:
            wait = 0.0
        elif window.resets:
            wait = window.resets[0][0] - now
        elif self.stats.in_flight > 0:
            wait = NEWS_POLL_S  # an answer will bring news (complete() wakes the waiters)
        else:
            # Nothing in flight, nothing pending: the headers cannot say more. Pace.
            return (bucket.wait_s(now) if bucket else 0.0), bucket is not None
        if distrust and bucket is not None:
            return max(wait, bucket.wait_s(now)), True
        return wait, False

    def _grant(self, est_tokens: int, est_cost_usd: float) -> Grant:
        self._next_id += 1
        grant_id = self._next_id
        self._granted_tokens += est_tokens
        self._reservations[grant_id] = (est_tokens, est_cost_usd)
        s = self.stats
        s.granted += 1
        s.first_grant_at = s.first_grant_at or time.time()
        s.in_flight += 1
        s.reserved_tokens += est_tokens
        s.reserved_cost_usd += est_cost_usd
        return Grant("granted", grant_id)

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
        self,
        grant_id: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        rate: RateHeaders | None = None,
    ) -> None:
        """Reconcile a call's reservation with what it really used (zeros when it was not billed);
        ``rate``: the answer's ``x-ratelimit-*`` headers, if it had any (a 429's too)."""
        est_tokens, est_cost = self._reservations.pop(grant_id, (0, 0.0))
        actual = prompt_tokens + completion_tokens
        if self._tokens:
            self._tokens.refill(self._clock())
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
        now = self._clock()
        age = rate.age_s if rate is not None and math.isfinite(rate.age_s) and rate.age_s > 0 else 0.0
        received = now - age
        if rate is not None:
            if actual > 0 or rate.limit_requests or rate.limit_tokens:
                self.observe_limits(rate.limit_requests or 0.0, rate.limit_tokens or 0.0)
            if self.use_remaining:
                self._observe(rate, received, actual)
        self._answered.append((now, received, est_tokens))
        self._changed.set()

    def _observe(self, rate: RateHeaders, received: float, billed_tokens: int) -> None:
        """Feed one answer's report to the windows. Keys: what we had granted, less every call the
        provider may not have counted when it wrote the report: those still in flight, and those
        whose answers were received after this one (they may have been admitted after it)."""
        late_calls, late_tokens = 0, 0
        for told_at, received_at, est in reversed(self._answered):  # newest first
            if told_at <= received:
                break  # told before this answer was received: received before it, too
            if received_at > received:
                late_calls, late_tokens = late_calls + 1, late_tokens + est
        now = self._clock()
        self._window_requests.observe(
            now,
            self._next_id - self.stats.in_flight - late_calls,
            rate.limit_requests,
            rate.remaining_requests,
            rate.reset_requests_s,
            1.0 if billed_tokens > 0 else 0.0,
        )
        self._window_tokens.observe(
            now,
            self._granted_tokens - self.stats.reserved_tokens - late_tokens,
            rate.limit_tokens,
            rate.remaining_tokens,
            rate.reset_tokens_s,
            float(billed_tokens),
        )

    def rate_limited(self, retry_after_s: float) -> None:
        """A 429 arrived: pause every caller for ``retry_after_s``."""
        self.stats.rate_limited += 1
        now = self._clock()
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
        # Whatever the headers said, nothing is free now; for one window, pace as well.
        self._window_requests.clamp(float(self._next_id))
        self._window_tokens.clamp(self._granted_tokens)
        windows = [w for w in (self._window_requests, self._window_tokens) if w.known]
        if windows:
            window_s = max(60.0 / w.scale for w in windows)
            distrust_s = min(MAX_DISTRUST_S, max(1.0, retry_after_s, window_s))
            self._distrust_until = max(self._distrust_until, now + distrust_s)
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
