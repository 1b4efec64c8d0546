"""From ledger records to corpus rows (pure: re-running it never calls the teacher).

One row per sample; a request that never got a paid answer becomes one row with ``error`` set,
and so does each sample a provider left out of its answer (fewer choices than ``n``), so nothing
is silently dropped. Parsing happens here, from the stored raw text, so a better parser only
needs this function re-run.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from scotd import parsing
from scotd.artifacts import SAMPLE_SCHEMA
from scotd.sample.plan import PlannedRequest
from scotd.teacher.client import Interpretation, inspect_body, interpret, mean_logprob, samples_from_body
from scotd.teacher.prices import Price


def view(record: dict[str, Any], n: int) -> Interpretation:
    """What a ledger record holds, read from its raw text (or, for older records, its parsed body)."""
    raw = record.get("raw_body")
    return interpret(raw, n) if isinstance(raw, str) else inspect_body(record.get("response"), n)


def settle(
    record: dict[str, Any],
    seen: Interpretation,
    price: Price,
    est_prompt_tokens: int,
    n: int,
    max_tokens: int,
    batch: bool = False,
) -> dict[str, Any]:
    """``record`` completed with what it cost: the provider's token counts (cached prompt tokens at
    the cached price, a batch answer at the batch price), or, when its usage is missing or
    malformed, the reservation's upper bound (prompt estimate + n x max_tokens, uncached), so a
    budget is never under-charged; ``usage_estimated`` says which."""
    if seen.usage is not None:
        usage, estimated = seen.usage, False
    else:
        prompt, completion = est_prompt_tokens, n * max_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        estimated = True
    return {
        **record,
        "usage": usage,
        "usage_estimated": estimated,
        "cost_usd": price.cost(
            usage["prompt_tokens"], usage["completion_tokens"], usage.get("cached_tokens", 0), batch
        ),
        "route": "batch" if batch else "online",
        "anomalies": list(seen.problems),
    }


def _error_row(base: dict[str, Any], reason: str, sample_index: int | None = None) -> dict[str, Any]:
    return {
        **base,
        "sample_index": sample_index,
        "raw_text": None,
        "rationale": None,
        "pred_label": None,
        "parse_error": None,
        "correct": None,
        "finish_reason": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "mean_logprob": None,
        "error": reason,
    }


def rows_for_request(
    planned: PlannedRequest, record: dict[str, Any] | None, failure: dict[str, Any] | None
) -> list[dict[str, Any]]:
    ex = planned.example
    base = {
        **ex.to_row(),
        "teacher_model": planned.request.model,
        "request_key": planned.key,
    }
    if record is None:
        reason = (failure or {}).get("error") or "not requested (budget cap or interrupted run)"
        return [_error_row(base, reason)]
    seen = view(record, planned.request.n)
    if seen.body is None:
        return [_error_row(base, f"unusable response: {seen.unusable}")]
    usage = record.get("usage") or {}
    rows = []
    samples = samples_from_body(planned.request.api, seen.body)[: planned.request.n]
    for i, sample in enumerate(samples):
        parsed = parsing.parse_answer(sample.text, ex)
        rows.append(
            {
                **base,
                "sample_index": planned.sample_offset + i,
                "raw_text": sample.text,
                "rationale": parsed.rationale,
                "pred_label": parsed.label,
                "parse_error": parsed.reason,
                "correct": parsing.is_correct(parsed, ex),
                "finish_reason": sample.finish_reason,
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": len(sample.token_logprobs) if sample.token_logprobs else None,
                "mean_logprob": mean_logprob(sample),
                "error": None,
            }
        )
    missing = f"the provider returned {len(samples)} of {planned.request.n} samples"
    rows += [
        _error_row(base, missing, planned.sample_offset + i) for i in range(len(samples), planned.request.n)
    ]
    return rows


def corpus_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
