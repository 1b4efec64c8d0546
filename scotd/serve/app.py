"""The voting student on Ray Serve: a model deployment (vLLM or transformers) behind a FastAPI ingress.

    serve run serve/config.yaml                         # or: scotd serve --model DIR
    curl -s 127.0.0.1:8000/v1/answer -d '{"question": "...", "choices": ["x", "y"], "votes": 10}'

Routes: ``POST /v1/answer`` (think K times, answer with the majority and its vote share),
``POST /v1/completions`` and ``POST /v1/chat/completions`` (OpenAI-compatible, ``n`` honoured),
``GET /v1/models``, ``GET /openapi.json``, ``GET /healthz``. Prompting, parsing and voting are
``scotd``'s own (``scotd.serve.api``), so the server answers exactly as ``scotd eval`` scores.

Edges: the ingress settles everything it can before the model sees a request (auth, body size,
validation, the prompt's token count against ``max_prompt_tokens`` and the model's context), so a
bad request costs no model time and gets a 4xx; a request past its deadline gets a 504 and its
generation is stopped; overload is a fast 503 with ``Retry-After`` (``max_queued_requests``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from scotd import metrics, storage
from scotd.generation.engines import Generation, build_engine, is_greedy
from scotd.serve.api import AnswerRequest, answer, chat_prompt, parse_all, prompt_for, prompt_problem
from scotd.serve.config import ServeConfig
from scotd.serve.guards import (
    RETRY_AFTER_S,
    bearer_ok,
    error,
    explain,
    json_error_body,
    read_body,
    unauthorized,
)
from scotd.serve.model_files import ModelInfo, check_model, load_model_info
from scotd.tasks.schema import Example
from scotd.voting import adaptive_vote, settled, vote

log = logging.getLogger("ray.serve")
BodyT = TypeVar("BodyT", bound=BaseModel)
# A request whose model replica dies under it (node lost, replica killed) is sent again this many
# times, to whichever replica Serve routes it to, within the same request_timeout_s.
REPLICA_LOSS_RETRIES = 2
BACKPRESSURE = BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S)


class GenItem(BaseModel):
    prompt: str
    n: int
    temperature: float
    max_new_tokens: int
    timeout_s: float  # the caller's deadline, as seconds left when it sent the request


@dataclass(frozen=True)
class GenResult:
    generations: list[Generation]
    error: str | None = None  # why this item failed (its neighbours in the batch are unaffected)


@dataclass
class _Job:
    """One queued generation and its stop signal: cancelled by the caller, or past its deadline."""

    item: GenItem
    deadline: float  # time.monotonic()
    cancelled: threading.Event = field(default_factory=threading.Event)

    def is_set(self) -> bool:
        return self.cancelled.is_set() or time.monotonic() > self.deadline


@serve.deployment(
    name="StudentModel",
    max_ongoing_requests=16,
    max_queued_requests=64,
    backpressure_config=BACKPRESSURE,
    health_check_period_s=5,
    health_check_timeout_s=30,
    graceful_shutdown_wait_loop_s=2,
    graceful_shutdown_timeout_s=20,
)
class StudentModel:
    """One model copy; concurrent requests are batched into engine calls (grouped by n, T, tokens)."""

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
        self._engine_busy_since: float | None = None

    async def generate(self, item: GenItem) -> GenResult:
        job = _Job(item, time.monotonic() + item.timeout_s)
        try:
            result: GenResult = await self.generate_batch(job)
            return result
        except asyncio.CancelledError:  # the caller gave up (504, disconnect): stop generating for it
            job.cancelled.set()
            raise

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def generate_batch(self, jobs: list[_Job]) -> list[GenResult]:
        groups: dict[tuple[int, float, int], list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            it = job.item
            groups[(it.n, 0.0 if is_greedy(it.temperature) else it.temperature, it.max_new_tokens)].append(i)
        out = [GenResult([], "cancelled") for _ in jobs]
        # Cheapest groups first, so one-vote answers batched with a big request do not wait for it.
        for key in sorted(groups, key=lambda k: k[0] * k[2]):
            live = [i for i in groups[key] if not jobs[i].is_set()]
            async with self._lock:  # one engine call at a time; the engine is not re-entrant
                for i, result in zip(live, await self._run([jobs[i] for i in live], *key), strict=True):
                    out[i] = result
        return out

    async def _run(self, jobs: list[_Job], n: int, temperature: float, max_new: int) -> list[GenResult]:
        """One engine call for ``jobs``; if it fails, each job alone, so a failure stays with its job."""
        if not jobs:
            return []
        try:
            gens = await self._engine_call([j.item.prompt for j in jobs], n, temperature, max_new, jobs)
            return [
                GenResult(g) if g or not j.is_set() else GenResult([], "stopped")
                for j, g in zip(jobs, gens, strict=True)
            ]
        except Exception as e:
            if len(jobs) > 1:
                return [(await self._run([j], n, temperature, max_new))[0] for j in jobs]
            log.warning("generation failed for one request: %s", type(e).__name__)
            return [GenResult([], type(e).__name__)]

    async def _engine_call(
        self, prompts: list[str], n: int, temperature: float, max_new: int, stop: list[_Job]
    ) -> list[list[Generation]]:
        seeds = [int(uuid.uuid4().int & 0x7FFFFFFF) for _ in prompts]
        self._engine_busy_since = time.monotonic()
        try:
            return await asyncio.to_thread(
                self.engine.generate, prompts, n, temperature, max_new, seeds, stop
            )
        finally:
            self._engine_busy_since = None

    def check_health(self) -> None:
        """Serve replaces this replica when this raises: a wedged engine call, or no engine at all."""
        if self.engine is None:
            raise RuntimeError("engine not loaded")
        since = self._engine_busy_since
        if since is not None and time.monotonic() - since > self.cfg.engine_wedged_after_s:
            raise RuntimeError(f"one engine call has run for {time.monotonic() - since:.0f} s: wedged")


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


# The schema is served by our own authenticated route; docs pages are off.
api = FastAPI(title="scotd student", docs_url=None, redoc_url=None, openapi_url=None)
ROUTES = {
    "/v1/answer": "POST",
    "/v1/completions": "POST",
    "/v1/chat/completions": "POST",
    "/v1/models": "GET",
    "/openapi.json": "GET",
    "/healthz": "GET",
}


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return json_error_body(exc.status_code, exc.detail)


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled %s on %s", type(exc).__name__, request.url.path)
    return error(500, "internal error", "server_error")


@serve.deployment(
    name="AnswerAPI",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0.1},
    # Admission is cheap (the model deployment has its own bound): many in flight, a bounded queue.
    max_ongoing_requests=256,
    max_queued_requests=512,
    backpressure_config=BACKPRESSURE,
)
@serve.ingress(api)
class AnswerAPI:
    def __init__(self, model: DeploymentHandle, cfg: dict[str, Any]) -> None:
        self.model = model
        self.cfg = ServeConfig.model_validate(cfg)
        self.model_name = self.cfg.display_name()
        # The token comes from this replica's own environment (a mounted Secret on KubeRay, the
        # node's environment elsewhere), never from the deployment's arguments.
        self._token: str | None = None
        if self.cfg.auth_token_env:
            self._token = os.environ.get(self.cfg.auth_token_env) or None
            if self._token is None:
                raise RuntimeError(
                    f"auth_token_env names ${self.cfg.auth_token_env}, which is not set in this replica's environment"
                )
        self.info: ModelInfo = load_model_info(self.cfg.model, self.cfg.engine)

    async def _admit(self, request: Request, schema: type[BodyT]) -> BodyT | JSONResponse:
        """Bearer auth, then the bounded body read, then the body's validation."""
        if not bearer_ok(request, self._token):
            return unauthorized()
        raw = await read_body(request, self.cfg.max_body_bytes)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            return schema.model_validate_json(raw)
        except ValidationError as e:
            message, param = explain(e)
            return error(422, message, param=param)

    async def _generate(
        self, prompt: str, n: int, temperature: float, max_new: int, param: str
    ) -> tuple[list[Generation], int] | JSONResponse:
        """``n`` generations and the prompt's token count, or the error response to send instead."""
        tokens = self.info.count_tokens(prompt)
        problem = prompt_problem(
            tokens, max_prompt_tokens=self.cfg.max_prompt_tokens, context_length=self.info.context_length
        )
        if problem:
            return error(422, problem, param=param)
        max_new = min(max_new, self.cfg.max_new_tokens, self.info.context_length - tokens)
        item = GenItem(
            prompt=prompt,
            n=n,
            temperature=temperature,
            max_new_tokens=max_new,
            timeout_s=self.cfg.request_timeout_s,
        )
        deadline = time.monotonic() + self.cfg.request_timeout_s
        for attempt in range(1 + REPLICA_LOSS_RETRIES):
            response = self.model.generate.remote(item)
            try:
                result: GenResult = await asyncio.wait_for(response, timeout=deadline - time.monotonic())
                break
            except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
                response.cancel()  # the replica stops generating for it and frees the slot
                return error(
                    504, f"the model did not answer within {self.cfg.request_timeout_s:g} s", "timeout"
                )
            except asyncio.CancelledError:  # the client went away
                response.cancel()
                raise
            except BackPressureError:
                return error(503, "the model is at capacity; retry shortly", "overloaded")
            except RayActorError as e:  # the replica (or its node) died: generation is stateless, ask another
                log.warning("model replica lost (%s); attempt %d", type(e).__name__, attempt + 1)
                if attempt == REPLICA_LOSS_RETRIES or time.monotonic() >= deadline:
                    return error(503, "the model is unavailable right now; retry shortly", "unavailable")
            except Exception as e:  # a crashed or restarting replica: a clean 503, never a hang
                log.warning("model call failed: %s", type(e).__name__)
                return error(503, "the model is unavailable right now; retry shortly", "unavailable")
        if result.error is not None:
            return error(503, "the model failed on this request; retry shortly", "unavailable")
        return result.generations, tokens

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}  # probes need no token; the model's health is Serve's check_health

    @api.get("/v1/models")
    async def models(self, request: Request) -> Any:
        if not bearer_ok(request, self._token):
            return unauthorized()
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "scotd"}]}

    @api.get("/openapi.json")
    async def openapi(self, request: Request) -> Any:
        if not bearer_ok(request, self._token):
            return unauthorized()
        return api.openapi()

    @api.post("/v1/answer")
    async def answer(self, request: Request) -> Any:
        start = time.perf_counter()
        response = await self._answer(request)
        run = self.model_name
        if isinstance(response, JSONResponse):  # refused or failed: the status alone
            metrics.inc("scotd_serve_requests_total", run=run, status=response.status_code)
            return response
        votes = int(response.get("max_votes") or response["samples"])  # K asked for
        metrics.inc("scotd_serve_requests_total", run=run, status=200)
        metrics.observe("scotd_serve_latency_seconds", time.perf_counter() - start, run=run, votes=votes)
        metrics.inc("scotd_serve_votes_spent_total", response["samples"], run=run)
        metrics.observe("scotd_serve_confidence", response["confidence"], run=run)
        metrics.inc("scotd_serve_unparseable_total", response["unparseable"], run=run)
        return response

    async def _answer(self, request: Request) -> Any:
        body = await self._admit(request, AnswerRequest)
        if isinstance(body, JSONResponse):
            return body
        problems = body.validate_limits(self.cfg)
        if problems:
            return error(422, "; ".join(m for _, m in problems), param=problems[0][0])
        start = time.perf_counter()
        example = body.example(self.cfg.task)
        k, temperature, adaptive = body.sampling(self.cfg)
        if adaptive:
            gens: tuple[list[Generation], int] | JSONResponse = await self._adaptive(example, k, temperature)
        else:
            gens = await self._generate(
                prompt_for(example), k, temperature, self.cfg.max_new_tokens, "question"
            )
        if isinstance(gens, JSONResponse):
            return gens
        result = answer(
            example,
            gens[0],
            label_only=self.cfg.label_only,
            with_rationales=body.rationales,
            model=self.model_name,
        )
        extra = {"votes_spent": len(gens[0]), "max_votes": k} if adaptive else {}
        return {**result, **extra, "latency_ms": round(1000 * (time.perf_counter() - start), 1)}

    async def _adaptive(
        self, example: Example, cap: int, temperature: float
    ) -> tuple[list[Generation], int] | JSONResponse:
        """Votes in rounds of ``adaptive_round`` until the vote is settled (``voting.settled``) or
        ``cap`` votes are drawn; the generations actually voted on (trimmed to where it settled)."""
        drawn: list[Generation] = []
        tokens = 0
        while len(drawn) < cap:
            n = min(self.cfg.adaptive_round, cap - len(drawn))
            got = await self._generate(
                prompt_for(example), n, temperature, self.cfg.max_new_tokens, "question"
            )
            if isinstance(got, JSONResponse):
                return got
            drawn += got[0]
            tokens = got[1]
            labels = [p.label for p in parse_all(example, drawn, self.cfg.label_only)]
            spent = adaptive_vote(labels, cap, self.cfg.adaptive_confidence).spent
            if spent < len(drawn) or settled(
                list(vote(labels[:spent]).counts.values()), spent, cap, self.cfg.adaptive_confidence
            ):
                return drawn[:spent], tokens
        return drawn, tokens

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
            return error(422, "prompt must be one non-empty string", param="prompt")
        return await self._openai_reply(prompt, body, chat=False)

    @api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Any:
        body = await self._admit(request, ChatRequest)
        if isinstance(body, JSONResponse):
            return body
        try:
            prompt = chat_prompt(body.messages)
        except ValueError as e:
            return error(422, str(e), param="messages")
        return await self._openai_reply(prompt, body, chat=True)

    # Last: every other path and method, behind the same auth and in the same error shape.
    @api.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def unknown(self, request: Request, path: str) -> Any:
        if not bearer_ok(request, self._token):
            return unauthorized()
        allowed = ROUTES.get(f"/{path}")
        if allowed is not None:
            return error(
                405, f"{request.method} is not allowed on /{path}; use {allowed}", headers={"Allow": allowed}
            )
        return error(404, f"no route /{path}; see /openapi.json", "not_found_error")

    async def _openai_reply(self, prompt: str, body: CompletionRequest | ChatRequest, chat: bool) -> Any:
        """Generate ``n`` samples for an OpenAI-style request and shape the reply."""
        if body.n > self.cfg.max_votes:
            return error(422, f"n must be at most {self.cfg.max_votes}", param="n")
        max_new = min(body.max_tokens or self.cfg.max_new_tokens, self.cfg.max_new_tokens)
        gens = await self._generate(
            prompt, body.n, body.temperature, max_new, "messages" if chat else "prompt"
        )
        if isinstance(gens, JSONResponse):
            return gens
        return self._openai_body("chat.completion" if chat else "text_completion", *gens, chat=chat)

    def _openai_body(
        self, obj: str, gens: list[Generation], prompt_tokens: int, chat: bool
    ) -> dict[str, Any]:
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
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }


def build_app(
    cfg: ServeConfig,
    model_options: dict[str, Any] | None = None,
    ingress_options: dict[str, Any] | None = None,
) -> serve.Application:
    """The application: ``AnswerAPI`` ingress bound to a ``StudentModel`` deployment.

    Raises ``ValueError`` / ``RuntimeError`` naming what to change when the engine cannot exist or
    the model is not a loadable export: a bad config refuses to start, not to answer.
    No secret travels in the arguments: replicas read the token from their own environment.
    """
    check_model(cfg.model, cfg.engine)
    dumped = cfg.model_dump(mode="json")
    model = StudentModel.options(**(model_options or {})).bind(dumped)  # type: ignore[attr-defined]
    return AnswerAPI.options(**(ingress_options or {})).bind(model, dumped)  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point for ``serve run`` / ``serve deploy`` config files (``args`` are ``ServeConfig`` fields)."""
    return build_app(ServeConfig.model_validate(args))
