"""Ray pieces of the sampling stage: the shared limiter actor and the Ray Data sampler class."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import numpy as np
import openai
import ray

from scotd import secrets
from scotd.sampling.plan import request_from_json
from scotd.teacher.client import CallOutcome, call_teacher
from scotd.teacher.ledger import Ledger
from scotd.teacher.prices import Price
from scotd.teacher.ratelimit import Grant, RateLimiter

NAMESPACE = "scotd"

# Columns of the sampler's output (one row per request).
STATUS_COLUMNS = ("key", "status", "error", "attempts", "prompt_tokens", "completion_tokens", "cost_usd")


@ray.remote(num_cpus=0, max_concurrency=10_000)  # type: ignore[call-overload]
class RateLimiterActor:
    """The one limiter of a run: every sampler on every node acquires from it."""

    def __init__(self, **kwargs: Any) -> None:
        self.limiter = RateLimiter(**kwargs)

    async def acquire(self, est_tokens: int, est_cost_usd: float) -> Grant:
        return await self.limiter.acquire(est_tokens, est_cost_usd)

    async def complete(
        self, grant_id: int, prompt_tokens: int = 0, completion_tokens: int = 0, cost: float = 0.0
    ) -> None:
        self.limiter.complete(grant_id, prompt_tokens, completion_tokens, cost)

    async def rate_limited(self, retry_after_s: float) -> None:
        self.limiter.rate_limited(retry_after_s)

    async def observe_limits(self, rpm: float, tpm: float) -> None:
        self.limiter.observe_limits(rpm, tpm)

    async def abort(self, reason: str) -> None:
        self.limiter.abort(reason)

    async def snapshot(self) -> dict[str, Any]:
        return self.limiter.snapshot()


class TeacherSampler:
    """Ray Data callable class: buys each request of a batch at most once, concurrently.

    Input columns: ``key``, ``request``, ``est_tokens``, ``est_cost``. Output: ``STATUS_COLUMNS``.
    A response is written to the ledger before anything else happens to it; a key already in
    the ledger (a retried batch after a worker was killed) is never sent again.
    """

    def __init__(
        self,
        *,
        limiter_name: str,
        ledger_root: str,
        base_url: str,
        api_key_env: str,
        api_key: secrets.Secret | None,
        timeout_s: float,
        max_retries: int,
        max_rate_limit_retries: int,
        backoff_base_s: float,
        backoff_max_s: float,
        idempotency_keys: bool,
        price: tuple[float, float],
    ) -> None:
        self.limiter = ray.get_actor(limiter_name, namespace=NAMESPACE)
        self.ledger = Ledger(ledger_root)
        self._secret = secrets.resolve(api_key_env, api_key)
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=self._secret or "EMPTY", max_retries=0)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_rate_limit_retries = max_rate_limit_retries
        self.backoff = (backoff_base_s, backoff_max_s)
        self.idempotency_keys = idempotency_keys
        self.price = Price(*price)
        self.rng = random.Random()

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = await asyncio.gather(
            *(
                self._buy(str(k), str(r), int(t), float(c))
                for k, r, t, c in zip(
                    batch["key"], batch["request"], batch["est_tokens"], batch["est_cost"], strict=True
                )
            )
        )
        return {col: [row[col] for row in rows] for col in STATUS_COLUMNS}

    def _status(
        self, key: str, status: str, error: str = "", attempts: int = 0, **usage: Any
    ) -> dict[str, Any]:
        return {
            "key": key,
            "status": status,
            "error": error,
            "attempts": attempts,
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
            "cost_usd": float(usage.get("cost_usd", 0.0)),
        }

    async def _buy(self, key: str, request_json: str, est_tokens: int, est_cost: float) -> dict[str, Any]:
        if await asyncio.to_thread(self.ledger.has, key):
            return self._status(key, "cached")
        request = request_from_json(request_json)
        attempts = transient = limited = 0
        while True:
            grant: Grant = await self.limiter.acquire.remote(est_tokens, est_cost)
            if grant.decision != "granted":
                return self._status(key, grant.decision, grant.reason, attempts)
            attempts += 1
            outcome = await call_teacher(
                self.client,
                request,
                timeout_s=self.timeout_s,
                idempotency_key=key if self.idempotency_keys else None,
                secret=self._secret,
            )
            if outcome.kind == "ok":
                return await self._record(key, request_json, outcome, grant, attempts)
            await self.limiter.complete.remote(grant.grant_id)  # not billed: release the reservation
            if outcome.kind == "rate_limited":
                limited += 1
                await self.limiter.rate_limited.remote(outcome.retry_after_s)
                if limited > self.max_rate_limit_retries:
                    return await self._fail(key, "rate_limited", outcome, attempts)
                continue
            if outcome.kind == "transient":
                transient += 1
                if transient > self.max_retries:
                    return await self._fail(key, "transient", outcome, attempts)
                base, cap = self.backoff
                await asyncio.sleep(min(cap, base * 2 ** (transient - 1)) * self.rng.uniform(0.5, 1.5))
                continue
            if outcome.kind == "auth":
                await self.limiter.abort.remote(f"HTTP {outcome.status}: {outcome.error}")
            return await self._fail(key, outcome.kind, outcome, attempts)

    async def _record(
        self, key: str, request_json: str, outcome: CallOutcome, grant: Grant, attempts: int
    ) -> dict[str, Any]:
        usage = outcome.usage
        cost = self.price.cost(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        record = {
            "key": key,
            "request": request_json,
            "response": outcome.body,
            "usage": usage,
            "cost_usd": cost,
            "attempts": attempts,
            "latency_s": outcome.latency_s,
            "received_at": time.time(),
        }
        # Durable first: a crash after this line loses nothing that was paid for.
        await asyncio.to_thread(self.ledger.put, key, record)
        await self.limiter.complete.remote(
            grant.grant_id, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), cost
        )
        await self.limiter.observe_limits.remote(outcome.limit_rpm, outcome.limit_tpm)
        return self._status(key, "ok", "", attempts, **usage, cost_usd=cost)

    async def _fail(self, key: str, kind: str, outcome: CallOutcome, attempts: int) -> dict[str, Any]:
        error = (
            f"{kind}: HTTP {outcome.status}: {outcome.error}"
            if outcome.status
            else f"{kind}: {outcome.error}"
        )
        await asyncio.to_thread(
            self.ledger.put_failure,
            key,
            {"key": key, "kind": kind, "error": error, "attempts": attempts, "at": time.time()},
        )
        return self._status(key, "failed_" + kind, error, attempts)
