"""The batch route's pure parts: prices with cache and batch discounts, batch lines and splits,
reservations, the dry run's route costs, odd output lines, prompt orders. No network, no Ray."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scotd import prompts
from scotd.config import load_config
from scotd.sample.batches import _read_line
from scotd.sample.batchplan import batch_line, reserve, route_costs, shared_prefix, split_batches
from scotd.sample.config import SampleConfig
from scotd.sample.plan import plan_requests
from scotd.tasks import load_task
from scotd.teacher.client import interpret
from scotd.teacher.prices import Price, cacheable_tokens, price_for
from scotd.teacher.tokens import counter_for

EXAMPLES = load_task("synthetic", "train", limit=6).examples


def _plan(**over: Any) -> list[Any]:
    return plan_requests(EXAMPLES, load_config(SampleConfig, overrides={"n": 4, **over}))


def test_keys_of_an_existing_ledger_are_unchanged() -> None:
    """Prompt orders and cache keys must not move the keys a ledger was written under."""
    assert [p.key[:12] for p in _plan()[:3]] == ["46697b37f451", "41484c0a4c98", "136c04b6cad9"]
    chat = _plan(teacher={"api": "chat"})
    assert [p.key[:12] for p in chat[:3]] == ["a55c1fab1d8b", "a24ce65a113a", "ca3b26573929"]
    assert {p.key for p in _plan(teacher={"omit_fields": "prompt_cache_key"})} == {p.key for p in _plan()}


def test_prices_split_cached_input_and_batch() -> None:
    mini = price_for("gpt-4o-mini")
    assert mini.cost(1_000_000, 0) == pytest.approx(0.15) and mini.cost(0, 1_000_000) == pytest.approx(0.60)
    assert mini.cost(1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.075)
    assert mini.cost(1_000_000, 1_000_000, batch=True) == pytest.approx(0.375)
    assert mini.split(1000, 10, 600, batch=True) == pytest.approx(
        {
            "uncached_input": 400 * 0.00015 / 2000,
            "cached_input": 600 * 0.000075 / 2000,
            "output": 10 * 0.0006 / 2000,
        }
    )
    assert price_for("gpt-3.5-turbo-instruct").cost(1000, 0, cached_tokens=1000) == pytest.approx(0.0015)
    assert Price(1.0, 2.0).cost(1000, 0, cached_tokens=5000) == pytest.approx(1.0)  # clamped, no cache price
    assert price_for("x", 0.001, 0.002, 0.0001, 0.4).cost(1000, 1000, 1000, batch=True) == pytest.approx(
        0.00084
    )
    assert [cacheable_tokens(t) for t in (1023, 1024, 1151, 1152, 5000)] == [0, 1024, 1024, 1152, 4992]


def test_batch_lines_carry_the_ledger_key_and_the_online_body() -> None:
    p = _plan(teacher={"api": "chat"})[0]
    line = json.loads(batch_line(p))
    assert line == {
        "custom_id": p.key,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": p.request.body(),
    }
    assert "seed" not in json.loads(batch_line(p, ("seed",)))["body"]


def test_split_keeps_limits_and_groups_a_shared_prefix() -> None:
    plan = _plan(prompt_order="fixed") + _plan()
    sizes = [len(batch_line(p).encode()) + 1 for p in plan]
    groups = split_batches(plan, max_requests=4, max_file_bytes=10**9)
    assert [len(g) for g in groups] == [4, 4, 4] and sorted(p.key for g in groups for p in g) == sorted(
        p.key for p in plan
    )
    keys = [p.request.cache_key for g in groups for p in g]
    assert keys == sorted(keys) and len(set(keys)) == 2  # one prefix's requests are sent together
    by_bytes = split_batches(plan, max_requests=100, max_file_bytes=max(sizes) * 2)
    assert all(sum(len(batch_line(p).encode()) + 1 for p in g) <= max(sizes) * 2 for g in by_bytes)
    assert sum(len(g) for g in by_bytes) == len(plan)
    with pytest.raises(ValueError, match="max_file_bytes"):
        split_batches(plan, max_requests=100, max_file_bytes=min(sizes) - 1)


def test_reservation_is_the_batch_worst_case() -> None:
    plan = _plan()
    price = Price(0.001, 0.002)
    res = reserve(plan, price)
    prompt = sum(p.est_prompt_tokens for p in plan)
    assert res.tokens == prompt + len(plan) * 4 * 256
    assert res.cost_usd == pytest.approx((prompt * 0.001 + len(plan) * 4 * 256 * 0.002) / 2000)


def test_fixed_order_shares_one_prefix_shuffled_does_not() -> None:
    pset = prompts.load_prompt_set("synthetic")
    fixed = [prompts.teacher_prompt(ex, pset, "fixed") for ex in EXAMPLES]
    shuffled = [prompts.teacher_prompt(ex, pset) for ex in EXAMPLES]
    prefix = prompts.teacher_prefix(EXAMPLES[0], pset, "fixed")
    assert all(t.startswith(prefix) for t in fixed) and len(shared_prefix(fixed)) >= len(prefix)
    assert len(shared_prefix(shuffled)) < len(prefix) // 2
    assert shared_prefix(["abc", "abd", "ab"]) == "ab" and shared_prefix([]) == ""


def test_route_costs_side_by_side() -> None:
    counter = counter_for("scotd-teacher-sim")
    price = Price(0.001, 0.002, True, 0.0005)
    plan = _plan(prompt_order="fixed")
    prefix_tokens = counter.length(shared_prefix([p.request.prompt for p in plan]))
    c = route_costs(plan, price, counter, cache_min_tokens=256)
    cached = (prefix_tokens // 128 * 128) * (len(plan) - 1)
    assert (
        c["prefix_tokens"] == prefix_tokens > 256 and c["prefix_cacheable"] and c["cached_tokens"] == cached
    )
    assert c["batch_usd"] == pytest.approx(c["online_usd"] / 2, rel=1e-4)
    assert c["cache_saving_online_usd"] == pytest.approx(cached * 0.0005 / 1000, rel=1e-3)
    assert route_costs(plan, price, counter, cache_min_tokens=1024)["cached_tokens"] == 0
    shuffled = route_costs(_plan(), price, counter, 256, fixed_prefix_tokens=prefix_tokens)
    assert shuffled["cached_tokens"] == 0 and shuffled["fixed_order"]["cached_tokens"] == cached


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ('{"custom_id": "k", "response": {"status_code": 200, "body": {"choices": []}}}', ("k", True, "")),
        (
            '{"custom_id": "k", "response": {"status_code": 500, "body": {}}, "error": null}',
            ("k", False, "HTTP 500"),
        ),
        (
            '{"custom_id": "k", "response": null, "error": {"code": "batch_expired", "message": "m"}}',
            ("k", False, "batch_expired: m"),
        ),
        (
            '{"custom_id": 7, "response": {"status_code": 200, "body": "x"}}',
            (None, False, "2xx line without a JSON body"),
        ),
        ("{torn", (None, False, "not JSON")),
        ("[1]", (None, False, "not an object")),
    ],
)
def test_odd_output_lines_are_failures_with_a_reason(line: str, expect: tuple[Any, bool, str]) -> None:
    key, body, why = _read_line(line)
    assert (key, body is not None, why) == expect


def test_cached_tokens_are_read_from_usage_and_odd_ones_ignored() -> None:
    def usage(details: Any) -> Any:
        body = {
            "choices": [{"text": "x", "index": 0}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": details},
        }
        return interpret(json.dumps(body), 1).usage

    assert usage({"cached_tokens": 64})["cached_tokens"] == 64
    assert usage({"cached_tokens": 500})["cached_tokens"] == 100  # never more than the prompt
    for odd in (None, "x", {"cached_tokens": -1}, {"cached_tokens": "many"}, {"cached_tokens": 0}):
        assert "cached_tokens" not in usage(odd)
