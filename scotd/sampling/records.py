"""From ledger records to corpus rows (pure: re-running it never calls the teacher).

One row per sample; a request that never got a paid answer becomes one row with ``error`` set,
so nothing is silently dropped. Parsing happens here, from the stored raw text, so a better
parser only needs this function re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from scotd import parsing
from scotd.sampling.plan import PlannedRequest
from scotd.teacher.client import mean_logprob, samples_from_body

CORPUS_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("task", pa.string()),
        ("split", pa.string()),
        ("question", pa.string()),
        ("choice_labels", pa.list_(pa.string())),
        ("choice_texts", pa.list_(pa.string())),
        ("gold", pa.string()),
        ("sample_index", pa.int32()),
        ("raw_text", pa.string()),
        ("rationale", pa.string()),
        ("pred_label", pa.string()),
        ("parse_error", pa.string()),
        ("correct", pa.bool_()),
        ("teacher_model", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("mean_logprob", pa.float64()),
        ("request_key", pa.string()),
        ("error", pa.string()),
    ]
)

RecordGetter = Callable[[str], dict[str, Any] | None]


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
        return [
            {
                **base,
                "sample_index": None,
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
        ]
    usage = record.get("usage") or {}
    rows = []
    for i, sample in enumerate(samples_from_body(planned.request.api, record["response"])):
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
    return rows


def corpus_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA)
