"""``ServeConfig``: the served student, its per-request bounds, and where it listens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from scotd.config import StageConfig
from scotd.paths import model_display_name
from scotd.tasks import task_spec


class ServeConfig(StageConfig):
    model: str = Field(
        "outputs/distill/synthetic/export", description="HF model dir (a `scotd distill` export)"
    )
    task: str = Field(
        "synthetic", description="prompt layout of this task (csqa, openbookqa, quarel, synthetic)"
    )
    name: str | None = Field(
        None,
        description="the model's id in /v1/models and responses (default: as `scotd eval` names it, the "
        "model dir name; a distill export's run dir)",
    )
    engine: Literal["auto", "hf", "vllm"] = "auto"
    dtype: str = "float32"
    label_only: bool = Field(False, description="the model answers with the label alone")
    default_votes: int = Field(10, ge=1)
    max_votes: int = Field(32, ge=1, description="upper bound of K per request")
    adaptive_round: int = Field(4, ge=1, description='"votes": "auto": rationales drawn per round')
    adaptive_confidence: float = Field(
        0.95, gt=0, le=1, description='"votes": "auto": stop when the leader leads with this confidence'
    )
    default_temperature: float = Field(0.7, ge=0, le=2)
    max_new_tokens: int = Field(128, ge=1)
    max_question_chars: int = Field(2000, ge=1)
    max_choices: int = Field(10, ge=2, le=26)
    max_choice_chars: int = Field(200, ge=1)
    max_prompt_tokens: int = Field(
        512,
        ge=1,
        description="longer prompts get a 422 (with n and max_new_tokens: the per-request work bound)",
    )
    max_body_bytes: int = Field(
        65536, ge=1024, le=1 << 20, description="bigger requests get a 413 (at most the proxy's 1 MiB bound)"
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="per-request deadline; past it a 504 and the generation is stopped"
    )
    engine_wedged_after_s: float = Field(
        120.0, gt=0, description="an engine call running longer fails the replica's health check"
    )
    auth_token_env: str | None = Field(
        None, description="NAME of the env var holding the bearer token; unset = no auth"
    )
    batching: bool = Field(True, description="batch concurrent requests in the model replica (@serve.batch)")
    max_batch_size: int = Field(8, ge=1)
    batch_wait_timeout_s: float = Field(0.02, ge=0)
    threads: int | None = Field(None, ge=1, description="torch threads per hf replica")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    def display_name(self) -> str:
        return self.name or model_display_name(self.model)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        task_spec(v)  # raises UnknownTask (a ValueError) naming the known tasks
        return v
