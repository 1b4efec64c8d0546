"""Request planning and corpus rows: pure functions, no Ray, no network."""

from __future__ import annotations

from typing import Any

from scotd.config import load_config
from scotd.sample.config import SampleConfig
from scotd.sample.plan import chunk_sizes, plan_requests, request_from_json, request_to_json
from scotd.sample.records import corpus_table, rows_for_request
from scotd.tasks import load_task
from scotd.teacher.client import redact, samples_from_body
from scotd.teacher.prices import price_for

EXAMPLES = load_task("synthetic", "train", limit=3).examples


def _cfg(**over: Any) -> SampleConfig:
    return load_config(SampleConfig, overrides=over)


def test_chunk_sizes() -> None:
    assert chunk_sizes(30, 128) == [30]
    assert chunk_sizes(30, 8) == [8, 8, 7, 7]
    assert chunk_sizes(5, 2) == [2, 2, 1]
    assert sum(chunk_sizes(257, 16)) == 257 and max(chunk_sizes(257, 16)) <= 16


def test_keys_are_stable_and_change_with_what_determines_the_answer() -> None:
    base = {p.key for p in plan_requests(EXAMPLES, _cfg(n=4))}
    assert base == {
        p.key for p in plan_requests(EXAMPLES, _cfg(n=4, limit=99, progress=False, out="elsewhere"))
    }
    for change in (
        {"temperature": 0.7},
        {"max_tokens": 100},
        {"stop": None},
        {"teacher": {"model": "other"}},
        {"teacher": {"api": "chat"}},
        {"n": 5},
        {"logprobs": False},
    ):
        assert base.isdisjoint({p.key for p in plan_requests(EXAMPLES, _cfg(**{"n": 4, **change}))}), change
    chunks = plan_requests(EXAMPLES[:1], _cfg(n=5, teacher={"max_n": 2}))
    assert [(p.chunk, p.sample_offset, p.request.n) for p in chunks] == [(0, 0, 2), (1, 2, 2), (2, 4, 1)]
    assert len({p.key for p in chunks}) == len(chunks) and len({p.request.seed for p in chunks}) == len(
        chunks
    )


def test_request_json_roundtrip_and_estimates() -> None:
    p = plan_requests(EXAMPLES[:1], _cfg(n=3, teacher={"api": "chat"}))[0]
    assert request_from_json(request_to_json(p.request)) == p.request
    assert p.est_tokens == p.est_prompt_tokens + 3 * 256
    assert p.est_cost(price_for("gpt-4o-mini")) > 0 and p.est_cost(price_for("unknown-model")) == 0


def test_rows_from_a_stored_response_and_from_a_failure() -> None:
    p = plan_requests(EXAMPLES[:1], _cfg(n=2))[0]
    ex = EXAMPLES[0]
    gold_text = ex.choice_text(ex.gold or "")
    body = {
        "choices": [
            {
                "index": 1,
                "text": "x. So the answer is: 99",
                "finish_reason": "stop",
                "logprobs": {"token_logprobs": [-1.0, -3.0]},
            },
            {
                "index": 0,
                "text": f"y. So the answer is: {gold_text}",
                "finish_reason": "stop",
                "logprobs": None,
            },
        ]
    }
    rows = rows_for_request(p, {"response": body, "usage": {"prompt_tokens": 7}}, None)
    assert [r["sample_index"] for r in rows] == [0, 1]
    assert rows[0]["pred_label"] == ex.gold and rows[0]["correct"] is True and rows[0]["mean_logprob"] is None
    assert (
        rows[1]["pred_label"] is None
        and rows[1]["parse_error"] == "not_a_choice"
        and rows[1]["correct"] is False
    )
    assert rows[1]["mean_logprob"] == -2.0 and rows[1]["completion_tokens"] == 2
    failed = rows_for_request(p, None, {"error": "transient: HTTP 503: overloaded", "kind": "transient"})
    assert (
        len(failed) == 1 and failed[0]["error"].startswith("transient") and failed[0]["sample_index"] is None
    )
    assert corpus_table(rows + failed).num_rows == 3


def test_chat_bodies_and_redaction() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"content": "hi"},
                "finish_reason": "length",
                "logprobs": {"content": [{"logprob": -0.5}]},
            }
        ]
    }
    (s,) = samples_from_body("chat", body)
    assert (s.text, s.finish_reason, s.token_logprobs) == ("hi", "length", [-0.5])
    assert (
        redact("Incorrect API key provided: sk-abc123****wxyz", None)
        == "Incorrect API key provided: [redacted]"
    )
    assert "topsecret" not in redact("key topsecret rejected", "topsecret")


def test_omitting_seed_keeps_the_keys_and_omitting_what_shapes_the_answer_changes_them() -> None:
    base = [p.key for p in plan_requests(EXAMPLES, _cfg(n=2))]
    assert [p.key for p in plan_requests(EXAMPLES, _cfg(n=2, teacher={"omit_fields": ["seed"]}))] == base
    no_stop = plan_requests(EXAMPLES, _cfg(n=2, teacher={"omit_fields": "stop,seed"}))
    assert not {p.key for p in no_stop} & set(base)
