"""Ray pieces of the sampling stage: the shared limiter actor and the Ray Data sampler class."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import numpy as np
import openai
import ray

from scotd import metrics, secrets, storage
from scotd.sample.plan import request_from_json
from scotd.sample.records import settle
from scotd.teacher.client import CallOutcome, TeacherRequest, call_teacher, interpret
from scotd.teacher.ledger import Ledger
from scotd.teacher.prices import Price
from scotd.teacher.ratelimit import Grant, RateHeaders, RateLimiter

log = logging.getLogger(__name__)

NAMESPACE = "scotd"

# Columns of the sampler's output (one row per request). ``anomalies``: odd-but-usable parts of
# the answer (comma-separated); ``unusable``: 2xx answers with no answer in them, set aside.
STATUS_COLUMNS = (
    "key", "status", "error", "attempts", "prompt_tokens", "completion_tokens", "cost_usd", "anomalies",
    "unusable",
)  # fmt: skip
# A request whose answers held no answer (not JSON, an HTML page, an error object) this many times,
# over all runs, is not bought again: it becomes an error row (``failed_unusable``).
MAX_UNUSABLE_ANSWERS = 3


@ray.remote(num_cpus=0, max_concurrency=10_000)  # type: ignore[call-overload]
class RateLimiterActor:
    """The one limiter of a run: every sampler on every node acquires from it."""

    def __init__(self, metrics_run: str = "", **kwargs: Any) -> None:
        self.limiter = RateLimiter(**kwargs)
        self._run, self._published = metrics_run, 0.0
        self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        """The pacing gauges (``scotd_teacher_*_rpm|tpm``, budget left), at most twice a second."""
        now = time.monotonic()
        if not (force or now - self._published >= 0.5) or not metrics.enabled():
            return
        self._published = now
        lim, s, run = self.limiter, self.limiter.stats, self._run
        requests, tokens = lim._requests, lim._tokens
        metrics.set_gauge("scotd_teacher_paced_rpm", requests.rate * 60 if requests else None, run=run)
        metrics.set_gauge("scotd_teacher_paced_tpm", tokens.rate * 60 if tokens else None, run=run)
        metrics.set_gauge("scotd_teacher_allowed_rpm", s.rpm_limit or None, run=run)
        metrics.set_gauge("scotd_teacher_allowed_tpm", s.tpm_limit or None, run=run)
        metrics.set_gauge("scotd_teacher_in_flight", s.in_flight, run=run)
        if lim.max_cost_usd is not None:
            metrics.set_gauge("scotd_teacher_budget_usd", lim.max_cost_usd, run=run)
            left = lim.max_cost_usd - s.cost_usd - s.reserved_cost_usd
            metrics.set_gauge("scotd_teacher_budget_remaining_usd", max(0.0, left), run=run)

    async def acquire(self, est_tokens: int, est_cost_usd: float) -> Grant:
        grant = await self.limiter.acquire(est_tokens, est_cost_usd)
        self._publish()
        return grant

    async def complete(
        self,
        grant_id: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        rate: RateHeaders | None = None,
    ) -> None:
        self.limiter.complete(grant_id, prompt_tokens, completion_tokens, cost, rate)
        self._publish()

    async def rate_limited(self, retry_after_s: float) -> None:
        self.limiter.rate_limited(retry_after_s)
        self._publish(force=True)

    async def abort(self, reason: str) -> None:
        self.limiter.abort(reason)

    async def snapshot(self) -> dict[str, Any]:
        self._publish(force=True)  # the driver polls at most once a second
        return self.limiter.snapshot()


class TeacherSampler:
    """Ray Data callable class: buys each request of a batch at most once, concurrently.

    Input columns: ``key``, ``request``, ``est_tokens``, ``est_cost``, ``unusable_before``.
    Output: ``STATUS_COLUMNS``. A response's raw text is written to the ledger before anything
    reads it; a key already in the ledger (a retried batch after a worker was killed) is never
    sent again. An answer that holds no answer is set aside and bought again, up to
    ``MAX_UNUSABLE_ANSWERS`` in all, each time under a new idempotency key (``<key>.<i>``) so an
    idempotent provider does not replay the same empty answer.
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
        omit_fields: tuple[str, ...] = (),
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
        self.omit_fields = tuple(omit_fields)
        self.rng = random.Random()

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = await asyncio.gather(
            *(
                self._buy(str(k), str(r), int(t), float(c), int(u))
                for k, r, t, c, u in zip(
                    batch["key"],
                    batch["request"],
                    batch["est_tokens"],
                    batch["est_cost"],
                    batch["unusable_before"],
                    strict=True,
                )
            )
        )
        return {col: [row[col] for row in rows] for col in STATUS_COLUMNS}

    def _status(
        self,
        key: str,
        status: str,
        error: str = "",
        attempts: int = 0,
        unusable: int = 0,
        anomalies: str = "",
        **usage: Any,
    ) -> dict[str, Any]:
        return {
            "key": key,
            "status": status,
            "error": error,
            "attempts": attempts,
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
            "cost_usd": float(usage.get("cost_usd", 0.0)),
            "anomalies": anomalies,
            "unusable": unusable,
        }

    async def _buy(
        self, key: str, request_json: str, est_tokens: int, est_cost: float, unusable_before: int
    ) -> dict[str, Any]:
        if await asyncio.to_thread(self.ledger.has, key):
            return self._status(key, "cached")
        request = request_from_json(request_json)
        attempts = transient = limited = unusable = 0
        if unusable_before >= MAX_UNUSABLE_ANSWERS:
            error = f"unusable: {unusable_before} answers held no answer; see ledger/unusable/"
            return await self._fail(key, "unusable", error, attempts)
        while True:
            grant: Grant = await self.limiter.acquire.remote(est_tokens, est_cost)
            if grant.decision != "granted":
                return self._status(key, grant.decision, grant.reason, attempts, unusable)
            attempts += 1
            set_aside = unusable_before + unusable
            outcome = await call_teacher(
                self.client,
                request,
                timeout_s=self.timeout_s,
                idempotency_key=(key if not set_aside else f"{key}.{set_aside}")
                if self.idempotency_keys
                else None,
                secret=self._secret,
                omit=self.omit_fields,
            )
            if outcome.kind == "ok":
                row, why = await self._record(
                    key, request_json, request, outcome, grant, attempts, est_tokens
                )
                if row is not None:
                    row["unusable"] = unusable
                    return row
                unusable += 1
                if unusable_before + unusable >= MAX_UNUSABLE_ANSWERS:
                    return await self._fail(key, "unusable", f"unusable: {why}", attempts, unusable)
                await self._backoff(unusable)
                continue
            # Not billed: release the reservation (the answer's headers still say what is free).
            await self.limiter.complete.remote(grant.grant_id, rate=outcome.rate.aged())
            error = f"HTTP {outcome.status}: {outcome.error}" if outcome.status else outcome.error
            if outcome.kind == "rate_limited":
                limited += 1
                await self.limiter.rate_limited.remote(outcome.retry_after_s)
                if limited > self.max_rate_limit_retries:
                    return await self._fail(key, "rate_limited", f"rate_limited: {error}", attempts, unusable)
                continue
            if outcome.kind == "transient":
                transient += 1
                if transient > self.max_retries:
                    return await self._fail(key, "transient", f"transient: {error}", attempts, unusable)
                await self._backoff(transient)
                continue
            if outcome.kind == "auth":
                await self.limiter.abort.remote(error)
            return await self._fail(key, outcome.kind, f"{outcome.kind}: {error}", attempts, unusable)

    async def _backoff(self, failures: int) -> None:
        base, cap = self.backoff
        await asyncio.sleep(min(cap, base * 2 ** (failures - 1)) * self.rng.uniform(0.5, 1.5))

    async def _record(
        self,
        key: str,
        request_json: str,
        request: TeacherRequest,
        outcome: CallOutcome,
        grant: Grant,
        attempts: int,
        est_tokens: int,
    ) -> tuple[dict[str, Any] | None, str]:
        """Store a 2xx answer, then read it: ``(status row, "")``, or ``(None, why)`` when it held
        no answer (then it is set aside and its reservation released)."""
        record = {
            "key": key,
            "request": request_json,
            "http_status": outcome.status,
            "raw_body": outcome.raw_body,
            "attempts": attempts,
            "latency_s": outcome.latency_s,
            "received_at": time.time(),
        }
        # Durable first, uninterpreted: a crash or an odd body after this line loses nothing paid for.
        try:
            await asyncio.to_thread(self.ledger.put, key, record)
        except storage.StorageError as e:
            # Paid but not stored (the ledger's storage failed even after retries): an error row,
            # loudly, rather than killing every other request of the run.
            log.error("the answer to %s was paid for but could not be stored: %s", key, e)
            completion = request.n * request.max_tokens  # charged at the reservation's bound
            prompt = est_tokens - completion
            await self.limiter.complete.remote(
                grant.grant_id, prompt, completion, self.price.cost(prompt, completion), outcome.rate.aged()
            )
            return self._status(key, "failed_store", f"paid, not stored: {e}", attempts), ""
        seen = interpret(outcome.raw_body, request.n)
        if seen.body is None:
            await self.limiter.complete.remote(grant.grant_id, rate=outcome.rate.aged())
            try:
                await asyncio.to_thread(self.ledger.set_aside_unusable, key, record, seen.unusable)
            except storage.StorageError as e:  # the raw answer stays put; the next run sets it aside
                log.error("could not set aside the unusable answer to %s: %s", key, e)
                return self._status(key, "failed_store", f"unusable, not set aside: {e}", attempts), ""
            return None, seen.unusable
        completion_bound = request.n * request.max_tokens
        settled = settle(
            record, seen, self.price, est_tokens - completion_bound, request.n, request.max_tokens
        )
        await asyncio.to_thread(self.ledger.put, key, settled)
        usage, cost = settled["usage"], settled["cost_usd"]
        await self.limiter.complete.remote(
            grant.grant_id, usage["prompt_tokens"], usage["completion_tokens"], cost, outcome.rate.aged()
        )
        row = self._status(key, "ok", "", attempts, anomalies=",".join(seen.problems), **usage, cost_usd=cost)
        return row, ""

    async def _fail(
        self, key: str, kind: str, error: str, attempts: int, unusable: int = 0
    ) -> dict[str, Any]:
        await asyncio.to_thread(
            self.ledger.put_failure,
            key,
            {"key": key, "kind": kind, "error": error, "attempts": attempts, "at": time.time()},
        )
        return self._status(key, "failed_" + kind, error, attempts, unusable)
