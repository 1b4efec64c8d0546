"""``SampleConfig``: everything ``scotd sample`` needs, validated before any call is made."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from scotd.config import ConfigSection, StageConfig
from scotd.paths import task_slug
from scotd.teacher.prices import Price, price_for


class TeacherEndpoint(ConfigSection):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL (…/v1)")
    model: str = Field("scotd-teacher-sim", description="teacher model name as the endpoint knows it")
    api: Literal["completions", "chat"] = Field("completions", description="which OpenAI API to call")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="NAME of the env var holding the API key ('' = send none: an endpoint without auth)",
    )
    cache_min_tokens: int = Field(
        1024,
        ge=1,
        description="the provider caches prompt prefixes of at least this many tokens (OpenAI: 1024)",
    )
    route: Literal["online", "batch", "auto"] = Field(
        "online",
        description="online: one request per call at full price; batch: the provider's Batch API (half "
        "price, results within the completion window); auto: batch when the endpoint offers it and the "
        "run has at least batch.auto_min_requests requests to buy, else online",
    )
    max_n: int = Field(
        128, ge=1, description="largest n the endpoint accepts; bigger n is split into requests"
    )
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout")
    max_retries: int = Field(6, ge=0, description="retries of 5xx / timeouts / dropped connections")
    max_rate_limit_retries: int = Field(50, ge=0, description="bound on 429 retries of one request")
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    idempotency_keys: bool = Field(True, description="send the request key as Idempotency-Key")
    tokenizer: str | None = Field(
        None,
        description="local tokenizer counting prompt tokens for rate-limit and budget reservations: a "
        "Hugging Face tokenizer directory or tiktoken:ENCODING, e.g. tiktoken:o200k_base for OpenAI "
        "models (default: the model's own when it is a local directory, else UTF-8 bytes, an upper bound)",
    )

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_exists(cls, value: str | None) -> str | None:
        from pathlib import Path

        from scotd.teacher.tokens import TIKTOKEN_PREFIX

        if value and not value.startswith(TIKTOKEN_PREFIX) and not Path(value).expanduser().is_dir():
            raise ValueError(
                "no such directory; give a local Hugging Face tokenizer directory or tiktoken:ENCODING"
            )
        return value

    omit_fields: tuple[str, ...] = Field(
        (),
        description="request fields not to send, for endpoints that reject them (e.g. seed on vLLM's "
        "CPU server): any of seed, top_p, stop, logprobs, temperature; comma-separated on the command line",
    )

    @field_validator("omit_fields", mode="before")
    @classmethod
    def _split_omitted(cls, value: object) -> object:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("omit_fields")
    @classmethod
    def _omittable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from scotd.teacher.client import OMITTABLE_FIELDS

        unknown = [v for v in value if v not in OMITTABLE_FIELDS]
        if unknown:
            raise ValueError(f"cannot omit {unknown}; omittable fields: {', '.join(OMITTABLE_FIELDS)}")
        return tuple(sorted(set(value)))


class Limits(ConfigSection):
    rpm: float = Field(0.0, ge=0, description="provider requests/min (0 = learn from x-ratelimit headers)")
    tpm: float = Field(0.0, ge=0, description="provider tokens/min (0 = learn from x-ratelimit headers)")
    safety: float = Field(0.95, gt=0, le=1, description="fraction of the limit to pace at")
    burst_s: float = Field(1.0, gt=0, description="seconds of unused credit a bucket may hold")


class Budget(ConfigSection):
    max_cost_usd: float | None = Field(None, ge=0, description="stop cleanly before spending more")
    max_total_tokens: int | None = Field(None, ge=0, description="stop cleanly before using more tokens")
    prompt_price_per_1k: float | None = Field(
        None, ge=0, description="USD per 1k prompt tokens (default: table)"
    )
    completion_price_per_1k: float | None = Field(None, ge=0, description="USD per 1k completion tokens")
    cached_prompt_price_per_1k: float | None = Field(
        None, ge=0, description="USD per 1k prompt tokens served from the provider's cache (default: table)"
    )
    batch_discount: float = Field(
        0.5, gt=0, le=1, description="what a batch token costs, as a fraction of the online price"
    )

    @model_validator(mode="after")
    def _prices_together(self) -> Budget:
        if (self.prompt_price_per_1k is None) != (self.completion_price_per_1k is None):
            given, missing = (
                ("prompt_price_per_1k", "completion_price_per_1k")
                if self.completion_price_per_1k is None
                else ("completion_price_per_1k", "prompt_price_per_1k")
            )
            raise ValueError(
                f"budget.{given} is set but budget.{missing} is not: give both prices (USD per 1k "
                "tokens), or neither to use the price table"
            )
        return self


class BatchOptions(ConfigSection):
    """The batch route (``teacher.route: batch``); defaults from OpenAI's Batch API documentation."""

    max_requests: int = Field(50_000, ge=1, description="requests per batch (provider limit)")
    max_file_bytes: int = Field(
        200_000_000, ge=1_000, description="bytes per batch input file (provider limit)"
    )
    completion_window: str = Field("24h", description="the completion window asked for")
    poll_s: float = Field(30.0, gt=0, description="seconds between status polls of a running batch")
    max_wait_s: float = Field(
        90_000.0, gt=0, description="stop waiting (resumably) after this long; the batches keep running"
    )
    auto_min_requests: int = Field(
        1_000, ge=1, description="route auto: runs with fewer requests to buy go online"
    )
    retry_route: Literal["online", "batch"] = Field(
        "online", description="how lines a batch failed or did not finish (expired, cancelled) are re-bought"
    )
    max_line_retries: int = Field(2, ge=0, description="re-buys of one failed or unfinished line, at most")
    fault_kill_at: Literal["upload", "create", "poll", "download"] | None = Field(
        None,
        description="testing only: SIGKILL this process in that phase (after the provider acted, before "
        "or while it is recorded), to prove a re-run resumes without paying twice",
    )


class SamplerPool(ConfigSection):
    num_samplers: int = Field(2, ge=1, description="sampler actors (each an asyncio client)")
    requests_per_batch: int = Field(8, ge=1, description="requests one Ray Data batch sends concurrently")
    batches_in_flight: int = Field(4, ge=1, description="batches each actor works on at once")
    num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per sampler actor")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="more Ray resources per sampler actor, e.g. {sampler: 1}: samplers land only on node types "
        "that have them",
    )


class SampleConfig(StageConfig):
    task: str = Field("synthetic", description="csqa | openbookqa | quarel | synthetic | jsonl:PATH")
    split: Literal["train", "validation", "test"] = "train"
    limit: int | None = Field(None, ge=1, description="first N questions of the split")
    data_dir: str | None = Field(
        None, description="task data directory (default $SCOTD_DATA_DIR, ../shared/data)"
    )
    seed: int = Field(0, description="seed of the synthetic task")
    n: int = Field(30, ge=1, description="chains of thought per question")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)
    stop: str | None = Field("\n\n", description="stop sequence")
    logprobs: bool = Field(True, description="ask for token log-probs (kept when the endpoint gives them)")
    prompt_set: str | None = Field(None, description="demonstrations to use (default: the task's own)")
    prompt_order: Literal["shuffled", "fixed"] = Field(
        "shuffled",
        description="shuffled: demonstrations in a per-question order (the paper's code); fixed: one "
        "order for every question, so every prompt starts with the same bytes and the provider's prompt "
        "cache can serve that prefix at the cached-input price",
    )
    out: str = Field(
        "outputs/sample/{task}-{split}", description="output dir or URI ({task}, {split} filled in)"
    )
    dry_run: bool = Field(False, description="print requests, tokens and cost; call nothing")
    progress: bool = Field(True, description="progress bar")
    teacher: TeacherEndpoint = TeacherEndpoint()
    limits: Limits = Limits()
    budget: Budget = Budget()
    batch: BatchOptions = BatchOptions()
    pool: SamplerPool = SamplerPool()
    status: bool = Field(False, description="print this run's batches and their states; buy nothing")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from scotd.tasks import task_spec

        task_spec(value)  # raises UnknownTask naming the choices
        return value

    @model_validator(mode="after")
    def _cap_needs_a_price(self) -> SampleConfig:
        """A cost cap binds only with a price: an unknown one is an error before any call."""
        b = self.budget
        if (
            b.max_cost_usd is not None
            and not price_for(self.teacher.model, b.prompt_price_per_1k, b.completion_price_per_1k).known
        ):
            raise ValueError(
                f"budget.max_cost_usd is set but no price is known for teacher.model "
                f"{self.teacher.model!r}, so the cap could not bind; set budget.prompt_price_per_1k "
                "and budget.completion_price_per_1k (USD per 1k tokens), or drop budget.max_cost_usd "
                "(budget.max_total_tokens caps tokens without prices)"
            )
        return self

    def price(self) -> Price:
        b = self.budget
        return price_for(
            self.teacher.model,
            b.prompt_price_per_1k,
            b.completion_price_per_1k,
            b.cached_prompt_price_per_1k,
            b.batch_discount,
        )

    def out_dir(self) -> str:
        return self.out.format(task=task_slug(self.task), split=self.split)
