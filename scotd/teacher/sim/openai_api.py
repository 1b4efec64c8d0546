"""The OpenAI API subset the simulator speaks: request validation and response/error bodies.

Requests: ``POST /v1/completions`` (``prompt``: a string or a list of one string) and
``POST /v1/chat/completions`` (``messages``; the teacher reads the LAST user message), with
``model, n, temperature, top_p, max_tokens, stop, seed, logprobs`` (completions: an int 0..5;
chat: a bool plus ``top_logprobs`` 0..20) and ``prompt_cache_key`` (a string that scopes the
prompt cache, with the model). ``top_p`` is accepted and has no effect; other unknown fields are
ignored. As on the real API, ``max_tokens`` defaults to 16 for completions and to the rest of the
context for chat. Chat prompt tokens are the contents' tokens plus 4 per message (role and
separators): ``<|start|> ROLE <|sep|> content... <|end|>``, the sequence the prompt cache reads.
Every ``usage`` carries ``prompt_tokens_details.cached_tokens`` (0 without a cache hit).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from scotd.teacher.sim.textops import Cut, tokenize

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
CHAT_TOKENS_PER_MESSAGE = 4
MAX_STOP_SEQUENCES = 4
FINGERPRINT = "fp_scotd_sim"


class ApiError(Exception):
    """An OpenAI-style error response: HTTP status and the ``error`` object's fields."""

    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


@dataclass(frozen=True)
class GenRequest:
    """A validated generation request; ``top_logprobs`` is ``None`` when log-probs were not asked.

    ``prompt`` is what the teacher reads (chat: the last user message); ``prompt_token_list`` is
    every token billed as prompt, in order (chat: all messages, framed), which the cache reads.
    """

    chat: bool
    model: str
    prompt: str
    prompt_tokens: int
    prompt_token_list: tuple[str, ...]
    cache_scope: str
    n: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]
    seed: int | None
    top_logprobs: int | None


def _int(body: dict[str, Any], key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{key} must be an integer", key)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise invalid(f"{key} = {value} is invalid; it must be {bound}", key)
    return value


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise invalid(f"{key} must be a number between {lo:g} and {hi:g}", key)
    return float(value)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise invalid(f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} strings", "stop")


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt must be a string or a list of one string (batches are not supported)", "prompt")
    return prompt


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(str(t) for t in texts)
    raise invalid("message content must be a string or a list of text parts", "messages")


def _messages(body: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """``(last user message, prompt tokens)``: each message framed by 4 tokens around its content."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list", "messages")
    tokens: list[str] = []
    last_user = None
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise invalid("each message must be an object with a string 'role'", "messages")
        text = _message_text(m.get("content"))
        # CHAT_TOKENS_PER_MESSAGE framing tokens around the content.
        tokens += ["<|start|>", m["role"], "<|sep|>", *tokenize(text), "<|end|>"]
        if m["role"] == "user":
            last_user = text
    if last_user is None:
        raise invalid("messages must include a user message", "messages")
    return last_user, tuple(tokens)


def parse_request(body: Any, *, chat: bool, max_n: int, context_tokens: int) -> GenRequest:
    """Validate a JSON body; raise ``ApiError`` (400) naming the offending parameter."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    if body.get("stream"):
        raise invalid("stream is not supported by teacher-sim; send stream=false", "stream")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter", "model")
    if chat:
        prompt, token_list = _messages(body)
    else:
        prompt = _prompt(body)
        token_list = tuple(tokenize(prompt))
    prompt_tokens = len(token_list)
    cache_key = body.get("prompt_cache_key")
    if cache_key is not None and not isinstance(cache_key, str):
        raise invalid("prompt_cache_key must be a string", "prompt_cache_key")
    n = _int(body, "n", 1, 1)
    assert n is not None
    if n > max_n:
        raise invalid(f"n = {n} is above this server's limit of {max_n}; split it into several requests", "n")
    if chat:
        top: int | None = None
        if body.get("logprobs") not in (None, False, True):
            raise invalid("logprobs must be a boolean for chat completions", "logprobs")
        top_asked = _int(body, "top_logprobs", None, 0, 20)
        if body.get("logprobs"):
            top = top_asked or 0
        elif top_asked is not None:
            raise invalid("top_logprobs requires logprobs=true", "top_logprobs")
        max_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = _int(body, max_key, None, 1)
    else:
        top = _int(body, "logprobs", None, 0, 5)
        max_tokens = _int(body, "max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS, 1)
    _number(body, "top_p", 1.0, 0.0, 1.0)
    asked = max_tokens or 0
    if prompt_tokens + asked > context_tokens or prompt_tokens >= context_tokens:
        raise invalid(
            f"This model's maximum context length is {context_tokens} tokens. However, you requested "
            f"{prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, {asked} for the completion). "
            "Please reduce the prompt or max_tokens.",
            "messages" if chat else "prompt",
            "context_length_exceeded",
        )
    return GenRequest(
        chat=chat,
        model=model,
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        prompt_token_list=token_list,
        cache_scope=f"{model}\x00{cache_key or ''}",
        n=n,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        max_tokens=max_tokens if max_tokens is not None else context_tokens - prompt_tokens,
        stop=_stop(body),
        seed=_int(body, "seed", None, -(2**63), 2**63 - 1),
        top_logprobs=top,
    )


def response_body(
    req: GenRequest, cuts: list[Cut], logprobs: list[dict[str, Any] | None], cached_tokens: int = 0
) -> dict[str, Any]:
    """The OpenAI response object for ``req``'s ``n`` cut samples (and their log-probs, if asked)."""
    completion_tokens = sum(len(c.tokens) for c in cuts)
    choices: list[dict[str, Any]] = []
    for i, (c, lp) in enumerate(zip(cuts, logprobs, strict=True)):
        if req.chat:
            message = {"role": "assistant", "content": c.text, "refusal": None}
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": c.finish_reason})
        else:
            choices.append({"text": c.text, "index": i, "logprobs": lp, "finish_reason": c.finish_reason})
    return {
        "id": ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex[:24],
        "object": "chat.completion" if req.chat else "text_completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": req.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }
