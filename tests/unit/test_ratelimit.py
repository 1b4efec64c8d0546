"""The shared limiter's pacing, 429 pauses, budget caps and abort (plain asyncio, real time)."""

from __future__ import annotations

import asyncio
import time

import pytest

from scotd.secrets import Secret
from scotd.teacher.ratelimit import RateLimiter


async def _grant_times(limiter: RateLimiter, count: int, tokens: int = 10) -> list[float]:
    start = time.monotonic()
    times = []
    for _ in range(count):
        grant = await limiter.acquire(tokens)
        assert grant.decision == "granted"
        times.append(time.monotonic() - start)
        limiter.complete(grant.grant_id, tokens, 0)
    return times


def test_requests_are_paced_at_safety_times_the_limit() -> None:
    limiter = RateLimiter(rpm=1200, safety=0.9)  # 18 requests/s
    times = asyncio.run(_grant_times(limiter, 28))
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 16 <= rate <= 19, rate
    assert times[0] < 0.05  # the first call goes at once


def test_tokens_are_paced_and_estimates_are_refunded() -> None:
    async def scenario() -> float:
        limiter = RateLimiter(tpm=60_000, safety=1.0, burst_s=0.2)  # 1000 tokens/s
        start = time.monotonic()
        for _ in range(6):
            grant = await limiter.acquire(500)
            limiter.complete(grant.grant_id, 100, 150)  # really used 250: 250 refunded
        return time.monotonic() - start

    elapsed = asyncio.run(scenario())
    # Without refunds 6 x 500 tokens need ~2.5 s; with them ~5 x 250 / 1000 = 1.25 s.
    assert 0.9 <= elapsed <= 1.8, elapsed


def test_429_pauses_every_caller() -> None:
    async def scenario() -> float:
        limiter = RateLimiter(rpm=60_000)
        grant = await limiter.acquire(1)
        limiter.complete(grant.grant_id)
        limiter.rate_limited(0.6)
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire(1) for _ in range(3)))
        return time.monotonic() - start

    assert 0.55 <= asyncio.run(scenario()) <= 1.2


def test_budget_counts_what_is_in_flight() -> None:
    async def scenario() -> list[str]:
        limiter = RateLimiter(max_cost_usd=1.0)
        first = await limiter.acquire(10, est_cost_usd=0.6)
        second = await limiter.acquire(10, est_cost_usd=0.6)  # 0.6 in flight + 0.6 > 1.0
        limiter.complete(first.grant_id, 5, 5, cost_usd=0.2)
        third = await limiter.acquire(10, est_cost_usd=0.6)  # 0.2 spent + 0.6 <= 1.0
        return [first.decision, second.decision, third.decision, second.reason]

    decisions = asyncio.run(scenario())
    assert decisions[:3] == ["granted", "budget", "granted"]
    assert "max_cost_usd is $1.0000" in decisions[3]


def test_token_cap_and_abort() -> None:
    async def scenario() -> list[str]:
        limiter = RateLimiter(max_total_tokens=100)
        a = await limiter.acquire(80)
        b = await limiter.acquire(30)
        limiter.abort("HTTP 401: bad key")
        c = await limiter.acquire(1)
        return [a.decision, b.decision, c.decision, c.reason]

    assert asyncio.run(scenario()) == ["granted", "budget", "aborted", "HTTP 401: bad key"]


def test_limits_are_learned_from_the_provider() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = RateLimiter()  # nothing configured: one call at a time until headers arrive
        first = await limiter.acquire(10)
        waiter = asyncio.create_task(limiter.acquire(10))
        await asyncio.sleep(0.2)
        assert not waiter.done(), "a second call must wait for the provider's limits"
        limiter.observe_limits(rpm=600, tpm=0)
        limiter.complete(first.grant_id, 10, 0)
        await asyncio.wait_for(waiter, timeout=2)
        return limiter.stats.rpm_limit, limiter.stats.tpm_limit

    assert asyncio.run(scenario()) == (600, 0)


def test_secret_never_shows() -> None:
    s = Secret("sk-live-123")
    assert "sk-live" not in repr(s) and "sk-live" not in str(s) and "sk-live" not in f"{[s]}"
    assert s.reveal() == "sk-live-123"
    with pytest.raises(ValueError):
        RateLimiter(safety=0)


def test_429_slows_the_pace_and_paid_answers_win_it_back() -> None:
    async def scenario() -> tuple[float, float, float]:
        limiter = RateLimiter(rpm=600, safety=1.0)
        assert limiter._requests is not None
        ceiling = limiter._requests.rate
        limiter.rate_limited(0.0)
        slowed = limiter._requests.rate
        for _ in range(400):  # 400 paid answers x 0.05% = +20% of the ceiling, capped
            limiter.complete(-1, 1, 0)
        return ceiling, slowed, limiter._requests.rate

    ceiling, slowed, recovered = asyncio.run(scenario())
    assert slowed == pytest.approx(0.9 * ceiling)
    assert recovered == pytest.approx(ceiling)  # 0.05% per paid answer, capped at the ceiling
