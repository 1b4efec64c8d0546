"""Pure pieces of teacher-sim's billing: the prompt cache, the per-route stats and batch line checks."""

from __future__ import annotations

import json

import pytest

from scotd.teacher.sim.batch_lines import check_line, iter_lines
from scotd.teacher.sim.caching import PrefixCache
from scotd.teacher.sim.openai_api import parse_request
from scotd.teacher.sim.stats import Prices, Stats


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tokens(n: int, tag: str = "t") -> list[str]:
    return [f" {tag}{i}" for i in range(n)]


def test_cached_tokens_are_the_shared_prefix_rounded_down_to_128_from_1024() -> None:
    cache = PrefixCache(1024, 128, 300.0, clock=FakeClock())
    base = tokens(1300)
    assert cache.observe("m", base) == 0  # first sight
    assert cache.observe("m", base) == 1280  # all full blocks: floor(1300 / 128) * 128
    assert cache.observe("m", base[:1100] + tokens(300, "x")) == 1024  # shares 1100 tokens
    assert cache.observe("m", base[:1000] + tokens(300, "y")) == 0  # 896 < 1024: not reported
    assert cache.observe("other scope", base) == 0
    assert cache.observe("m", tokens(500)) == 0  # short prompts never hit


def test_the_cache_forgets_after_its_ttl_and_stays_bounded() -> None:
    clock = FakeClock()
    cache = PrefixCache(128, 128, 10.0, max_blocks=20, clock=clock)
    prompt = tokens(1024)  # 8 blocks
    cache.observe("m", prompt)
    clock.now += 9
    assert cache.observe("m", prompt) == 1024  # still fresh, and refreshed
    clock.now += 9
    assert cache.observe("m", prompt) == 1024
    clock.now += 10
    assert cache.observe("m", prompt) == 0  # unused for 10 s: gone
    for i in range(10):
        cache.observe("m", tokens(1024, f"p{i}"))
    assert len(cache) == 20
    cache.clear()
    assert len(cache) == 0


def test_stats_split_routes_count_cross_route_repeats_and_price_batches_and_cache() -> None:
    prices = Prices(prompt_per_1k=1.0, completion_per_1k=2.0, batch_discount=0.5, cached_input_discount=0.75)
    stats = Stats(prices)
    stats.bill("key:a", "synthetic", 1000, 100, cached_tokens=0)  # online
    stats.bill("key:a", "synthetic", 2000, 100, cached_tokens=1024, route="batch")  # repeat across routes
    stats.bill("key:b", "synthetic", 10, 10, route="batch")
    stats.bill("key:b", "synthetic", 10, 10, route="batch")  # billed twice in batches
    stats.bill("key:c", "synthetic", 10, 10)
    stats.bill("key:c", "synthetic", 10, 10)  # online-only repeat: not a batch line
    snap = stats.snapshot()
    assert snap["paid_requests"] == 6
    assert (snap["online_requests_billed"], snap["batch_lines_billed"]) == (3, 3)
    assert snap["repeated_paid_requests"] == 3 and snap["lines_billed_twice"] == 2
    assert snap["outcomes"]["ok"] == 3  # batch lines are not HTTP responses
    batch = snap["by_route"]["batch"]
    assert (batch["prompt_uncached"], batch["prompt_cached"], batch["completion"]) == (996, 1024, 120)
    expected = 0.5 * (996 * 1.0 + 1024 * 1.0 * 0.25 + 120 * 2.0) / 1000
    assert batch["cost_usd"] == pytest.approx(expected)
    assert snap["by_route"]["online"]["cost_usd"] == pytest.approx((1020 + 240) / 1000)
    assert snap["cost_usd"] == pytest.approx(expected + (1020 + 240) / 1000)
    assert snap["tokens"] == {
        "prompt": 3040, "completion": 240, "total": 3280, "prompt_cached": 1024, "prompt_uncached": 2016,
    }  # fmt: skip
    stats.reset()
    assert stats.snapshot()["lines_billed_twice"] == 0 and stats.snapshot()["cost_usd"] == 0


def test_chat_prompt_tokens_frame_every_message_and_scope_the_cache() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        "prompt_cache_key": "task-1",
        "some_future_field": {"x": 1},
    }
    req = parse_request(body, chat=True, max_n=8, context_tokens=100)
    assert req.prompt_tokens == len(req.prompt_token_list) == (3 + 4) + (2 + 4)
    assert req.prompt_token_list[:3] == ("<|start|>", "system", "<|sep|>") and req.prompt == "Hi there"
    other = parse_request({**body, "prompt_cache_key": "task-2"}, chat=True, max_n=8, context_tokens=100)
    assert req.cache_scope != other.cache_scope


def _line(**overrides: object) -> bytes:
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "m", "prompt": "Q: x\nA:", "n": 3, "max_tokens": 10},
        **overrides,
    }
    return json.dumps(line).encode()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json_line"),
        (b"[1, 2]", "invalid_json_line"),
        (_line(custom_id=""), "missing_required_parameter"),
        (_line(custom_id="seen"), "duplicate_custom_id"),
        (_line(method="GET"), "invalid_method"),
        (_line(url="/v1/chat/completions"), "url_mismatch"),
        (_line(body="text"), "missing_required_parameter"),
        (_line(body={"model": "other", "prompt": "x"}), "model_mismatch"),
    ],
)
def test_bad_batch_lines_get_openai_error_codes_with_their_line(raw: bytes, code: str) -> None:
    checked = check_line(
        raw, 7, endpoint="/v1/completions", model="m", seen={"seen"}, max_n=8, context_tokens=100
    )
    assert isinstance(checked, dict) and checked["code"] == code and checked["line"] == 7


def test_good_lines_are_estimated_as_prompt_plus_n_max_tokens() -> None:
    seen: set[str] = set()
    checked = check_line(
        _line(), 1, endpoint="/v1/completions", model="m", seen=seen, max_n=8, context_tokens=100
    )
    assert checked == ("a", 5 + 3 * 10) and seen == {"a"}  # "Q: x\nA:" is 5 tokens
    too_many = _line(custom_id="b", body={"model": "m", "prompt": "x", "n": 99})
    assert check_line(
        too_many, 2, endpoint="/v1/completions", model="m", seen=seen, max_n=8, context_tokens=100
    ) == ("b", 0)  # passes the check; its 400 comes when it runs
    assert list(iter_lines(b'{"a"}\n\n  \n{"b"}')) == [(1, 0, 5), (4, 10, 15)]
