"""``TeacherSimConfig``: every knob of the embedded teacher server, as YAML keys and ``--flags``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from scotd.config import StageConfig
from scotd.teacher.sim.synthetic_cot import DEFAULT_ERROR_RATE

Backend = Literal["auto", "synthetic", "replay"]
# Faults drawn before any work, never billed: errors, hangs, drops and 200s that carry no answer.
UNBILLED_FAULTS = ("500", "502", "503", "hang", "drop", "malformed", "html", "error_body")
# Odd shapes of a billed answer (odd providers and proxies): the tokens are paid for all the same.
BILLED_FAULTS = ("usage_missing", "usage_null", "usage_string", "usage_strings", "short_choices")
FAULTS = UNBILLED_FAULTS + BILLED_FAULTS


class TeacherSimConfig(StageConfig):
    """Server, teacher, limits and faults of ``scotd teacher-sim``; all randomness from ``seed``."""

    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to bind; 0 picks a free one")
    backend: Backend = Field(
        "auto",
        description="synthetic | replay | auto (synthetic if the question parses, else replay if "
        "recorded, else an uninformative fallback chain)",
    )
    data_dir: str | None = Field(None, description="shared data dir for replay (else $SCOTD_DATA_DIR)")
    model_name: str = Field("scotd-teacher-sim", description="model id listed by /v1/models")
    seed: int = Field(0, description="seeds sampling, latency jitter and fault draws")
    error_rate: float = Field(
        DEFAULT_ERROR_RATE, ge=0, le=0.9, description="synthetic teacher's per-step mistake rate at T=1"
    )
    max_n: int = Field(128, ge=1, description="largest n per request; more is a 400 (as OpenAI)")
    context_tokens: int = Field(8192, ge=1, description="prompt + max_tokens budget; over it is a 400")
    rpm: int = Field(0, ge=0, description="requests per minute; 0 = unlimited")
    tpm: int = Field(0, ge=0, description="tokens (prompt + completions) per minute; 0 = unlimited")
    window_s: float = Field(
        60.0, gt=0, le=3600, description="sliding window; capacity scales as rpm*window_s/60"
    )
    latency_base_ms: float = Field(50.0, ge=0, le=60_000, description="latency of every OK response")
    latency_per_token_ms: float = Field(
        1.0, ge=0, le=1000, description="extra latency per token of the longest sample"
    )
    latency_jitter: float = Field(0.2, ge=0, le=1, description="latency is scaled by 1 +/- this, uniformly")
    fault_500: float = Field(0.0, ge=0, le=1, description="probability of HTTP 500 per request")
    fault_502: float = Field(0.0, ge=0, le=1, description="probability of HTTP 502 per request")
    fault_503: float = Field(0.0, ge=0, le=1, description="probability of HTTP 503 per request")
    fault_hang: float = Field(0.0, ge=0, le=1, description="probability of hanging hang_s, then dropping")
    fault_drop: float = Field(0.0, ge=0, le=1, description="probability of closing the connection unanswered")
    fault_malformed: float = Field(0.0, ge=0, le=1, description="probability of a 200 with truncated JSON")
    fault_html: float = Field(
        0.0, ge=0, le=1, description="probability of a 200 text/html error page (a proxy in the way)"
    )
    fault_error_body: float = Field(
        0.0, ge=0, le=1, description="probability of a 200 whose JSON body is an error object"
    )
    fault_usage_missing: float = Field(0.0, ge=0, le=1, description="billed answer without a usage field")
    fault_usage_null: float = Field(0.0, ge=0, le=1, description="billed answer with usage: null")
    fault_usage_string: float = Field(0.0, ge=0, le=1, description="billed answer with usage as a string")
    fault_usage_strings: float = Field(
        0.0, ge=0, le=1, description="billed answer whose usage numbers are strings"
    )
    fault_short_choices: float = Field(
        0.0, ge=0, le=1, description="billed answer with fewer choices than n (the rest missing)"
    )
    hang_s: float = Field(30.0, ge=0, le=600, description="how long a hanging request sleeps before dropping")
    api_key_env: str | None = Field(
        None, description="NAME of the env var holding the expected bearer key; unset = no auth"
    )
    idempotency: bool = Field(
        True, description="honour Idempotency-Key: a repeated key gets the first answer again, unbilled"
    )
    summary_interval_s: float = Field(30.0, gt=0, description="at most one INFO summary per interval")
    # --- Files and the Batch API (``files``, ``batches``) ---------------------------------------
    files_max_total_bytes: int = Field(
        1 << 30,
        ge=1,
        description="bytes of files kept in memory (uploads and outputs); an upload past it is a 413",
    )
    batch_max_file_bytes: int = Field(
        200_000_000, ge=1, description="largest upload, as OpenAI's 200 MB; a larger one is a 413"
    )
    batch_max_requests: int = Field(
        50_000, ge=1, description="most request lines in a batch file (as OpenAI); more fails the batch"
    )
    batch_window_s: float = Field(
        60.0, gt=0, le=86_400, description='how long completion_window "24h" lasts here; then a batch expires'
    )
    batch_validate_s: float = Field(
        0.5, ge=0, le=600, description="time a batch spends validating, and again finalizing"
    )
    batch_line_ms: float = Field(
        1.0, ge=0, le=60_000, description="processing time per request line, so a batch can be polled mid-way"
    )
    batch_line_failure_rate: float = Field(
        0.0, ge=0, le=1, description="probability a line fails with a 500 (error file, unbilled); seeded"
    )
    batch_expire_after_lines: int | None = Field(
        None, ge=0, description="force expiry once this many lines are processed (tests); null = by time only"
    )
    batch_queue_tokens: int = Field(
        0,
        ge=0,
        description="enqueued-token limit (prompt + n x max_tokens of every line of the batches validated "
        "and not finished); a batch past it fails with token_limit_exceeded; 0 = unlimited",
    )
    batch_max_active: int = Field(
        100, ge=1, description="batches validating or running at once; creating one more is a 429"
    )
    # --- Prompt caching (``caching``) and prices (``stats``) ------------------------------------
    cache_min_tokens: int = Field(
        1024, ge=1, description="shortest cached prefix reported (as OpenAI); shorter hits report 0"
    )
    cache_increment_tokens: int = Field(
        128, ge=1, description="cached_tokens is the shared prefix rounded down to a multiple of this"
    )
    cache_ttl_s: float = Field(300.0, gt=0, description="a cached prefix unused this long is forgotten")
    price_prompt_per_1k: float = Field(
        0.00015, ge=0, description="USD per 1k prompt tokens for /stats cost_usd (default: gpt-4o-mini)"
    )
    price_completion_per_1k: float = Field(
        0.0006, ge=0, description="USD per 1k completion tokens for /stats cost_usd (default: gpt-4o-mini)"
    )
    batch_discount: float = Field(
        0.5, ge=0, le=1, description="fraction off every price for batch lines (0.5: half price, as OpenAI)"
    )
    cached_input_discount: float = Field(
        0.5,
        ge=0,
        le=1,
        description="fraction off the prompt price for cached prompt tokens (0.5: gpt-4o-mini)",
    )

    @model_validator(mode="after")
    def _fault_rates_sum_to_at_most_one(self) -> TeacherSimConfig:
        total = sum(self.fault_rate(f) for f in FAULTS)
        if total > 1:
            raise ValueError(
                f"fault rates sum to {total:.3f}; they are exclusive per request and must sum to <= 1"
            )
        return self

    def fault_rate(self, fault: str) -> float:
        return float(getattr(self, f"fault_{fault}"))
