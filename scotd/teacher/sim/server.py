"""The aiohttp app of ``scotd teacher-sim``: an OpenAI-compatible server that misbehaves on purpose.

Order of a generation request, each step able to end it:

1. auth: with ``api_key_env`` set, a missing/wrong ``Authorization: Bearer`` is a 401;
2. validation: a bad body, ``n > max_n`` or a too-long context is a 400;
3. faults, drawn from the seeded RNG before any work and never billed: 500 / 502 / 503,
   hang (sleep ``hang_s``, then drop), drop (close the connection unanswered), malformed
   (200 with a truncated JSON body), html (200 with a proxy's HTML error page), error_body
   (200 whose JSON body is an ``error`` object). The billed odd shapes (``usage_missing``,
   ``usage_null``, ``usage_string``, ``usage_strings``, ``short_choices``) are drawn here too
   but go through steps 4-7 and are billed; only the response body is bent at the end;
4. generation (instant; see ``backends``), then the provider's ``stop`` / ``max_tokens`` cut;
5. admission to the RPM/TPM window with the request's full token cost, else a 429;
   (a repeated ``Idempotency-Key`` skips 3-7 and gets the first answer again, unbilled);
6. latency: ``base + per_token x longest sample``, jittered, slept without blocking;
7. the 200 response, billed in ``/stats``.

Every billed answer reports ``usage.prompt_tokens_details.cached_tokens`` from the prompt cache
(``caching``), looked up when the answer is billed. Files and the Batch API (``batch_api``:
``/v1/files``, ``/v1/batches``; ``batches``: the state machine) share the auth check and the
error handling; a batch line is generated and billed as an online request (``answer``), without
faults, limits or latency, at the batch price (``stats``).

Every ``/v1`` response carries the ``x-ratelimit-*`` headers of the limits that are set. Keys are
never logged or echoed. Every error, the server's own included (unknown route, body too large, a
bug), is an OpenAI-shaped JSON error, never a plain-text page. ``/stats`` and ``/stats/reset`` are unauthenticated local admin routes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
from typing import Any

from aiohttp import web

from scotd.teacher.sim.answer import draft
from scotd.teacher.sim.backends import Teacher
from scotd.teacher.sim.batch_api import BatchApi, Handler, read_json
from scotd.teacher.sim.batches import BatchRunner
from scotd.teacher.sim.caching import PrefixCache
from scotd.teacher.sim.config import BILLED_FAULTS, FAULTS, TeacherSimConfig
from scotd.teacher.sim.files import FileStore
from scotd.teacher.sim.idempotency import IdempotencyCache
from scotd.teacher.sim.limits import SlidingWindowLimiter, retry_headers
from scotd.teacher.sim.openai_api import ApiError, GenRequest, parse_request
from scotd.teacher.sim.replay import ReplayStore
from scotd.teacher.sim.stats import Prices, Stats, request_identity

log = logging.getLogger(__name__)

_SERVER_ERRORS = {
    "500": ("The server had an error while processing your request. Sorry about that!", "server_error"),
    "502": ("Bad gateway.", "server_error"),
    "503": ("The engine is currently overloaded, please try again later.", "server_error"),
}


_PROXY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def bend(body: dict[str, Any], shape: str | None) -> dict[str, Any]:
    """A billed response body as an odd provider shapes it (``shape`` from ``BILLED_FAULTS``)."""
    usage = body["usage"]
    if shape == "usage_missing":
        del body["usage"]
    elif shape == "usage_null":
        body["usage"] = None
    elif shape == "usage_string":
        body["usage"] = f"{usage['total_tokens']} tokens"
    elif shape == "usage_strings":  # nested details too: {"cached_tokens": "0"}
        body["usage"] = {
            k: {kk: str(vv) for kk, vv in v.items()} if isinstance(v, dict) else str(v)
            for k, v in usage.items()
        }
    elif shape == "short_choices":
        body["choices"] = body["choices"][: len(body["choices"]) // 2]
    return body


class TeacherSim:
    """Holds the config, the teacher, the limiter, the stats and the seeded RNGs of one server."""

    def __init__(self, config: TeacherSimConfig, replay: ReplayStore, api_key: str | None = None) -> None:
        self.config = config
        self._api_key = api_key
        self.teacher = Teacher(config.backend, config.error_rate, replay)
        self.limiter = SlidingWindowLimiter(config.rpm, config.tpm, config.window_s)
        self.stats = Stats(
            Prices(
                config.price_prompt_per_1k,
                config.price_completion_per_1k,
                config.batch_discount,
                config.cached_input_discount,
            )
        )
        self.cache = PrefixCache(config.cache_min_tokens, config.cache_increment_tokens, config.cache_ttl_s)
        self.idempotency = IdempotencyCache() if config.idempotency else None
        self.files = FileStore(config.files_max_total_bytes)
        self.batches = BatchRunner(config, self.files, self.answer_line)
        self._batch_api = BatchApi(self.files, self.batches, self.stats, config.batch_max_file_bytes)
        # Separate streams so turning on faults does not change what the teacher writes.
        self._sample_rng = random.Random(f"{config.seed}:samples")
        self._fault_rng = random.Random(f"{config.seed}:faults")
        self._latency_rng = random.Random(f"{config.seed}:latency")
        self._last_summary = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[self._json_errors])
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/stats/reset", self.reset_stats)
        for method, path, handler in self._batch_api.routes():
            app.router.add_route(method, path, self._guarded(handler))
        app.on_response_prepare.append(self._add_limit_headers)
        app.on_shutdown.append(self._close_batches)
        return app

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind the auth check, its ``ApiError``s as JSON errors."""

        async def route(request: web.Request) -> web.StreamResponse:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
            try:
                return await handler(request)
            except ApiError as err:
                return self._error(request, err, str(err.status))

        return route

    async def _close_batches(self, app: web.Application) -> None:
        await self.batches.close()

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """aiohttp's own errors (404, 405, 413, ...) and any bug become JSON errors, not text pages."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as e:
            if e.status < 400:
                raise
            type_ = "invalid_request_error" if e.status < 500 else "server_error"
            return self._error(request, ApiError(e.status, e.reason, type_), str(e.status))
        except Exception:
            log.exception("teacher-sim: unexpected error on %s", request.path)
            err = ApiError(500, "teacher-sim failed on this request (a bug; see its log)", "server_error")
            return self._error(request, err, "500")

    async def _add_limit_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/v1/"):
            for name, value in self.limiter.headers().items():
                response.headers.setdefault(name, value)

    # --- routes -------------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def models(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        model = {"id": self.config.model_name, "object": "model", "created": 0, "owned_by": "scotd"}
        return web.json_response({"object": "list", "data": [model]})

    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats.snapshot())

    async def reset_stats(self, request: web.Request) -> web.StreamResponse:
        self.stats.reset()
        self.cache.clear()
        return web.json_response({"reset": True})

    # --- the generation pipeline --------------------------------------------------------------

    def _error(
        self, request: web.Request, err: ApiError, outcome: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.record(outcome)
        log.debug("%s -> %d %s", request.path, err.status, err.code or err.type)
        return web.json_response(err.body(), status=err.status, headers=headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if self._api_key is None:
            return None
        # Header bytes that are not UTF-8 arrive surrogate-escaped: compare them as the bytes sent.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, f"Bearer {self._api_key}".encode()):
            return None
        err = ApiError(401, "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")
        return self._error(request, err, "401")

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            body = await read_json(request)
            req = parse_request(
                body, chat=chat, max_n=self.config.max_n, context_tokens=self.config.context_tokens
            )
        except ApiError as err:
            return self._error(request, err, "400")
        key = request.headers.get("Idempotency-Key")
        identity = request_identity(key, body)
        if self.idempotency is None or not key:
            return await self._attempt(request, req, identity, chat)
        stored = await self.idempotency.claim(key)
        if stored is not None:
            self.stats.record("replay")
            return web.json_response(stored)
        answered: dict[str, Any] | None = None
        try:
            response = await self._attempt(request, req, identity, chat)
            if isinstance(response, web.Response) and response.status == 200 and response.body is not None:
                try:
                    answered = json.loads(bytes(response.body))  # type: ignore[arg-type]
                except ValueError:
                    answered = None  # a malformed fault: nothing was answered
            return response
        finally:
            self.idempotency.release(key, answered)

    async def _attempt(
        self, request: web.Request, req: GenRequest, identity: str, chat: bool
    ) -> web.StreamResponse:
        fault = self._draw_fault()
        if fault is not None and fault not in BILLED_FAULTS:
            return await self._fault(request, fault, chat)
        return await self._answer(request, req, identity, shape=fault)

    def _draw_fault(self) -> str | None:
        u, edge = self._fault_rng.random(), 0.0
        for fault in FAULTS:
            edge += self.config.fault_rate(fault)
            if u < edge:
                return fault
        return None

    async def _fault(self, request: web.Request, fault: str, chat: bool) -> web.StreamResponse:
        if fault in _SERVER_ERRORS:
            message, type_ = _SERVER_ERRORS[fault]
            return self._error(request, ApiError(int(fault), message, type_), fault)
        self.stats.record(fault)
        log.debug("%s -> fault %s", request.path, fault)
        if fault == "malformed":
            obj = "chat.completion" if chat else "text_completion"
            truncated = f'{{"id": "cmpl-truncated", "object": "{obj}", "choices": [{{"index": 0, "te'
            return web.Response(status=200, body=truncated.encode(), content_type="application/json")
        if fault == "html":
            return web.Response(status=200, text=_PROXY_PAGE, content_type="text/html")
        if fault == "error_body":
            err = ApiError(500, "The server had an error while processing your request.", "server_error")
            return web.json_response(err.body(), status=200)
        if fault == "hang":
            await asyncio.sleep(self.config.hang_s)
        # hang and drop: close the connection without a response (aiohttp then writes nothing).
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    async def _answer(
        self, request: web.Request, req: GenRequest, identity: str, shape: str | None = None
    ) -> web.StreamResponse:
        answer = draft(self.teacher, req, self._sample_rng)
        rejection = self.limiter.admit(req.prompt_tokens + answer.completion_tokens)
        if rejection is not None:
            err = ApiError(429, rejection.message, rejection.kind, None, "rate_limit_exceeded")
            return self._error(request, err, "429", retry_headers(rejection.retry_after_s))
        await asyncio.sleep(self._latency_s(answer.longest_tokens))
        cached = self.cache.observe(req.cache_scope, req.prompt_token_list)
        body = bend(answer.body(cached), shape)
        self.stats.bill(
            identity,
            answer.backend,
            req.prompt_tokens,
            answer.completion_tokens,
            shape or "ok",
            cached_tokens=cached,
        )
        log.debug(
            "%s n=%d backend=%s tokens=%d+%d (%d cached)",
            request.path, req.n, answer.backend, req.prompt_tokens, answer.completion_tokens, cached,
        )  # fmt: skip
        self._maybe_summarise()
        return web.json_response(body)

    def answer_line(self, body: dict[str, Any], chat: bool, identity: str) -> tuple[int, dict[str, Any]]:
        """A batch line: ``(200, completion)`` billed at the batch price, or ``(400, error)`` unbilled."""
        try:
            req = parse_request(
                body, chat=chat, max_n=self.config.max_n, context_tokens=self.config.context_tokens
            )
        except ApiError as err:
            return err.status, err.body()
        answer = draft(self.teacher, req, self._sample_rng)
        cached = self.cache.observe(req.cache_scope, req.prompt_token_list)
        self.stats.bill(
            identity,
            answer.backend,
            req.prompt_tokens,
            answer.completion_tokens,
            cached_tokens=cached,
            route="batch",
        )
        return 200, answer.body(cached)

    def _latency_s(self, longest_tokens: int) -> float:
        cfg = self.config
        base_ms = cfg.latency_base_ms + cfg.latency_per_token_ms * longest_tokens
        jitter = 1 + cfg.latency_jitter * self._latency_rng.uniform(-1, 1)
        return max(0.0, base_ms * jitter / 1000)

    def _maybe_summarise(self) -> None:
        now = time.monotonic()
        if now - self._last_summary >= self.config.summary_interval_s:
            self._last_summary = now
            log.info("teacher-sim: %s", self.stats.summary())
