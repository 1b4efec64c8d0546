"""The voting student on Ray Serve: a model deployment (vLLM or transformers) behind a FastAPI ingress.

    serve run serve/config.yaml                         # or: scotd serve --model DIR
    curl -s 127.0.0.1:8000/v1/answer -d '{"question": "...", "choices": ["x", "y"], "votes": 10}'

Routes: ``POST /v1/answer`` (think K times, answer with the majority and its vote share),
``POST /v1/completions`` and ``POST /v1/chat/completions`` (OpenAI-compatible, ``n`` honoured),
``GET /v1/models``, ``GET /healthz``. Prompting, parsing and voting are ``scotd``'s own
(``scotd.serving``), so the server answers exactly as ``scotd eval`` scores.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections import defaultdict
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from scotd import secrets, storage
from scotd.evaluation.engines import Generation, build_engine, resolve_engine
from scotd.serving import AnswerRequest, ServeConfig, answer, chat_prompt, prompt_for

log = logging.getLogger("ray.serve")
BodyT = TypeVar("BodyT", bound=BaseModel)


class GenItem(BaseModel):
    prompt: str
    n: int
    temperature: float
    max_new_tokens: int


@serve.deployment(
    name="StudentModel",
    health_check_period_s=5,
    health_check_timeout_s=30,
    graceful_shutdown_wait_loop_s=2,
    graceful_shutdown_timeout_s=20,
)
class StudentModel:
    """One model copy; concurrent requests are batched into one engine call (grouped by n, T)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = ServeConfig.model_validate(cfg)
        self.engine = build_engine(
            self.cfg.engine,
            storage.local_dir(self.cfg.model),  # an s3:// / gs:// export is copied to this node once
            batch_size=64,
            dtype=self.cfg.dtype,
            seed=0,
            threads=self.cfg.threads,
        )
        # @serve.batch exposes setters; max_batch_size=1 turns batching off (for the benchmark).
        self.generate_batch.set_max_batch_size(self.cfg.max_batch_size if self.cfg.batching else 1)  # type: ignore[attr-defined]
        self.generate_batch.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self._lock = asyncio.Lock()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def generate_batch(self, items: list[GenItem]) -> list[list[Generation]]:
        groups: dict[tuple[int, float, int], list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            groups[(it.n, it.temperature, it.max_new_tokens)].append(i)
        out: list[list[Generation]] = [[] for _ in items]
        async with self._lock:  # one engine call at a time; the engine is not re-entrant
            for (n, temperature, max_new), idx in groups.items():
                prompts = [items[i].prompt for i in idx]
                seeds = [int(uuid.uuid4().int & 0x7FFFFFFF) for _ in idx]
                gens = await asyncio.to_thread(self.engine.generate, prompts, n, temperature, max_new, seeds)
                for i, g in zip(idx, gens, strict=True):
                    out[i] = g
        return out

    async def generate(self, item: GenItem) -> list[Generation]:
        result: list[Generation] = await self.generate_batch(item)
        return result

    def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("engine not loaded")


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    # Error bodies carry a message and a type, never a stack trace.
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


api = FastAPI(title="scotd student", docs_url=None, redoc_url=None)


def _explain(error: ValidationError) -> str:
    problems = []
    for e in error.errors():
        if e["type"] == "json_invalid":
            problems.append(f"the body is not valid JSON ({e['msg']})")
        else:
            problems.append(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}")
    return "; ".join(problems)


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return _error(500, "internal error", "server_error")


@serve.deployment(name="AnswerAPI", num_replicas=1, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class AnswerAPI:
    def __init__(
        self, model: DeploymentHandle, cfg: dict[str, Any], token: secrets.Secret | None = None
    ) -> None:
        self.model = model
        self.cfg = ServeConfig.model_validate(cfg)
        self.model_name = self.cfg.model.rstrip("/").rsplit("/", 1)[-1]
        resolved = secrets.resolve(self.cfg.auth_token_env, token) if self.cfg.auth_token_env else None
        if self.cfg.auth_token_env and not resolved:
            raise RuntimeError(f"auth_token_env names ${self.cfg.auth_token_env}, which is not set")
        self._token = resolved

    async def _admit(self, request: Request, schema: type[BodyT]) -> BodyT | JSONResponse:
        """Size limit, then bearer auth, then the body's validation: in that order, per request."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.cfg.max_body_bytes:
            return _error(413, f"request body is {length} bytes; the limit is {self.cfg.max_body_bytes}")
        if self._token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return _error(401, "missing or wrong bearer token", "authentication_error")
        raw = await request.body()
        if len(raw) > self.cfg.max_body_bytes:
            return _error(413, f"request body is {len(raw)} bytes; the limit is {self.cfg.max_body_bytes}")
        try:
            return schema.model_validate_json(raw)
        except ValidationError as e:
            return _error(422, _explain(e))

    async def _generate(
        self, prompt: str, n: int, temperature: float, max_new: int
    ) -> list[Generation] | JSONResponse:
        item = GenItem(prompt=prompt, n=n, temperature=temperature, max_new_tokens=max_new)
        try:
            gens: list[Generation] = await asyncio.wait_for(
                self.model.generate.remote(item), timeout=self.cfg.request_timeout_s
            )
            return gens
        except TimeoutError:
            return _error(504, f"the model did not answer within {self.cfg.request_timeout_s:g} s", "timeout")
        except Exception as e:  # a crashed or restarting replica: a clean 503, never a hang
            log.warning("model call failed: %s", type(e).__name__)
            return _error(503, "the model is unavailable right now; retry shortly", "unavailable")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self, request: Request) -> Any:
        if self._token is not None and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), f"Bearer {self._token}".encode()
        ):
            return _error(401, "missing or wrong bearer token", "authentication_error")
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "scotd"}]}

    @api.post("/v1/answer")
    async def answer(self, request: Request) -> Any:
        body = await self._admit(request, AnswerRequest)
        if isinstance(body, JSONResponse):
            return body
        problems = body.validate_limits(self.cfg)
        if problems:
            return _error(422, "; ".join(problems))
        start = time.perf_counter()
        example = body.example(self.cfg.task)
        k = body.votes or self.cfg.default_votes
        temperature = self.cfg.default_temperature if body.temperature is None else body.temperature
        gens = await self._generate(prompt_for(example), k, temperature, self.cfg.max_new_tokens)
        if isinstance(gens, JSONResponse):
            return gens
        result = answer(
            example,
            gens,
            label_only=self.cfg.label_only,
            with_rationales=body.rationales,
            model=self.model_name,
        )
        return {**result, "latency_ms": round(1000 * (time.perf_counter() - start), 1)}

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        body = await self._admit(request, CompletionRequest)
        if isinstance(body, JSONResponse):
            return body
        prompt = (
            body.prompt
            if isinstance(body.prompt, str)
            else (body.prompt[0] if len(body.prompt) == 1 else None)
        )
        if prompt is None or not prompt.strip():
            return _error(422, "prompt must be one non-empty string")
        return await self._openai_reply(prompt, body, chat=False)

    @api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Any:
        body = await self._admit(request, ChatRequest)
        if isinstance(body, JSONResponse):
            return body
        try:
            prompt = chat_prompt(body.messages)
        except ValueError as e:
            return _error(422, str(e))
        return await self._openai_reply(prompt, body, chat=True)

    async def _openai_reply(self, prompt: str, body: CompletionRequest | ChatRequest, chat: bool) -> Any:
        """Generate ``n`` samples for an OpenAI-style request and shape the reply."""
        if body.n > self.cfg.max_votes:
            return _error(422, f"n must be at most {self.cfg.max_votes}")
        max_new = min(body.max_tokens or self.cfg.max_new_tokens, self.cfg.max_new_tokens)
        gens = await self._generate(prompt, body.n, body.temperature, max_new)
        if isinstance(gens, JSONResponse):
            return gens
        return self._openai_body("chat.completion" if chat else "text_completion", gens, chat=chat)

    def _openai_body(self, obj: str, gens: list[Generation], chat: bool) -> dict[str, Any]:
        choices = [
            {
                "index": i,
                "finish_reason": "stop",
                **({"message": {"role": "assistant", "content": g.text}} if chat else {"text": g.text}),
            }
            for i, g in enumerate(gens)
        ]
        completion = sum(g.tokens for g in gens)
        return {
            "id": f"scotd-{uuid.uuid4().hex[:12]}",
            "object": obj,
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": completion, "total_tokens": completion},
        }


def build_app(cfg: ServeConfig, model_options: dict[str, Any] | None = None) -> serve.Application:
    """The application: ``AnswerAPI`` ingress bound to a ``StudentModel`` deployment."""
    resolve_engine(cfg.engine)  # fail here, not in a replica, when the engine cannot exist
    dumped = cfg.model_dump(mode="json")
    model = StudentModel.options(**(model_options or {})).bind(dumped)  # type: ignore[attr-defined]
    token = secrets.from_env(cfg.auth_token_env) if cfg.auth_token_env else None
    return AnswerAPI.bind(model, dumped, token)  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point for ``serve run`` / ``serve deploy`` config files (``args`` are ``ServeConfig`` fields)."""
    return build_app(ServeConfig.model_validate(args))
