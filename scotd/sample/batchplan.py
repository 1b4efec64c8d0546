"""What the batch route would send and what each route would cost (pure: no network, no Ray).

- ``batch_lines`` / ``split_batches``: the Batch API input lines (``custom_id`` = the ledger key)
  cut into batches within the provider's limits, requests of one shared prompt prefix together;
- ``reserve``: a batch's worst-case cost and tokens (every sample at ``max_tokens``, no cache
  hit), reserved against the budget before it is created;
- ``route_costs``: the dry run's side-by-side cost of the whole plan online, as a batch, and with
  the provider's prompt cache serving the shared prefix — with the prefix's length in tokens and
  whether it reaches the caching threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scotd.sample.plan import PlannedRequest
from scotd.teacher.prices import Price, cacheable_tokens
from scotd.teacher.tokens import PromptCounter

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


def batch_line(p: PlannedRequest, omit: tuple[str, ...] = ()) -> str:
    """One input line: ``{"custom_id": <ledger key>, "method": "POST", "url", "body"}``."""
    body = p.request.body(omit)
    return json.dumps(
        {"custom_id": p.key, "method": "POST", "url": ENDPOINTS[p.request.api], "body": body},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _prefix_group(p: PlannedRequest) -> str:
    return p.request.cache_key or ""


def split_batches(
    todo: list[PlannedRequest], max_requests: int, max_file_bytes: int, omit: tuple[str, ...] = ()
) -> list[list[PlannedRequest]]:
    """Consecutive groups within both limits; requests of one cache key (one shared prefix) stay
    together and in plan order. Raises ``ValueError`` for a single line over ``max_file_bytes``."""
    ordered = sorted(todo, key=_prefix_group)  # stable: plan order within a prefix
    batches: list[list[PlannedRequest]] = []
    current: list[PlannedRequest] = []
    size = 0
    for p in ordered:
        line = len(batch_line(p, omit).encode("utf-8")) + 1
        if line > max_file_bytes:
            raise ValueError(
                f"request {p.key[:12]} (question {p.example.id}) alone is {line} bytes, over "
                f"batch.max_file_bytes={max_file_bytes}"
            )
        if current and (len(current) >= max_requests or size + line > max_file_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(p)
        size += line
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class Reservation:
    cost_usd: float
    tokens: int


def reserve(batch: list[PlannedRequest], price: Price) -> Reservation:
    """Worst case of a batch: every prompt uncached, every sample at ``max_tokens``, batch price."""
    prompt = sum(p.est_prompt_tokens for p in batch)
    completion = sum(p.request.n * p.request.max_tokens for p in batch)
    return Reservation(price.cost(prompt, completion, batch=True), prompt + completion)


def shared_prefix(texts: list[str]) -> str:
    """The longest prefix every text starts with."""
    if not texts:
        return ""
    lo, hi = min(texts), max(texts)  # the common prefix of all = that of the extremes
    i = 0
    while i < min(len(lo), len(hi)) and lo[i] == hi[i]:
        i += 1
    return lo[:i]


def _prompt_text(p: PlannedRequest) -> str:
    return p.request.prompt if p.request.api == "completions" else "".join(c for _, c in p.request.messages)


def route_costs(
    todo: list[PlannedRequest],
    price: Price,
    counter: PromptCounter,
    cache_min_tokens: int,
    fixed_prefix_tokens: int | None = None,
) -> dict[str, Any]:
    """The whole plan's cost per route (USD, every sample at ``max_tokens``: an upper bound).

    ``prefix_tokens``: the prompt prefix all planned requests share; from the second request on,
    the provider can serve ``cacheable_tokens`` of it from its cache. ``fixed_prefix_tokens``:
    what a ``prompt_order: fixed`` plan would share (shown when the plan is shuffled).
    """
    prompt = sum(p.est_prompt_tokens for p in todo)
    completion = sum(p.request.n * p.request.max_tokens for p in todo)
    prefix = shared_prefix([_prompt_text(p) for p in todo]) if len(todo) > 1 else ""
    # The byte bound would overstate what a cache can serve ~4x: use the typical 4 bytes per token,
    # and say so (``prefix_count``); a real tokenizer (teacher.tokenizer) counts it exactly.
    approx = counter.encode_len is None
    prefix_tokens = len(prefix.encode("utf-8")) // 4 if approx else counter.length(prefix)
    cached_each = cacheable_tokens(prefix_tokens, cache_min_tokens)
    cached = cached_each * max(0, len(todo) - 1)
    online = price.cost(prompt, completion)
    batch = price.cost(prompt, completion, batch=True)
    out: dict[str, Any] = {
        "requests": len(todo),
        "prompt_tokens": prompt,
        "max_completion_tokens": completion,
        "prefix_tokens": prefix_tokens,
        "prefix_count": "approximate: UTF-8 bytes / 4 (set teacher.tokenizer to count exactly)"
        if approx
        else counter.method,
        "cache_min_tokens": cache_min_tokens,
        "prefix_cacheable": cached_each > 0,
        "cached_tokens": cached,
        "online_usd": round(online, 6),
        "batch_usd": round(batch, 6),
        "online_cached_usd": round(price.cost(prompt, completion, cached), 6),
        "batch_cached_usd": round(price.cost(prompt, completion, cached, batch=True), 6),
    }
    out["cache_saving_online_usd"] = round(online - out["online_cached_usd"], 6)
    out["cache_saving_batch_usd"] = round(batch - out["batch_cached_usd"], 6)
    if fixed_prefix_tokens is not None:
        fixed_each = cacheable_tokens(fixed_prefix_tokens, cache_min_tokens)
        fixed_cached = fixed_each * max(0, len(todo) - 1)
        out["fixed_order"] = {
            "prefix_tokens": fixed_prefix_tokens,
            "prefix_cacheable": fixed_each > 0,
            "cached_tokens": fixed_cached,
            "online_cached_usd": round(price.cost(prompt, completion, fixed_cached), 6),
            "batch_cached_usd": round(price.cost(prompt, completion, fixed_cached, batch=True), 6),
        }
    return out


def render_costs(c: dict[str, Any]) -> str:
    """The dry run's table: one line per route."""
    lines = [
        f"{c['requests']} requests, {c['prompt_tokens']:,} prompt tokens, "
        f"≤ {c['max_completion_tokens']:,} completion tokens (every sample at max_tokens: an upper bound)",
        "| route | without prompt cache | with prompt cache |",
        "|---|---|---|",
        f"| online | ${c['online_usd']:.4f} | ${c['online_cached_usd']:.4f} |",
        f"| batch | ${c['batch_usd']:.4f} | ${c['batch_cached_usd']:.4f} |",
    ]
    reach = "reaches" if c["prefix_cacheable"] else "is below"
    lines.append(
        f"shared prompt prefix: {c['prefix_tokens']} tokens ({c['prefix_count']}), {reach} the provider's caching threshold "
        f"({c['cache_min_tokens']}); cached: {c['cached_tokens']:,} tokens, saving "
        f"${c['cache_saving_online_usd']:.4f} online / ${c['cache_saving_batch_usd']:.4f} batch"
    )
    fixed = c.get("fixed_order")
    if fixed:
        reach = "reaches" if fixed["prefix_cacheable"] else "is below"
        lines.append(
            f"with prompt_order: fixed the shared prefix would be {fixed['prefix_tokens']} tokens ({reach} "
            f"the threshold): ${fixed['online_cached_usd']:.4f} online / ${fixed['batch_cached_usd']:.4f} batch"
        )
    return "\n".join(lines)
