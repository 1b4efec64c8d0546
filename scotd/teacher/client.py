"""One teacher call through the official ``openai`` async client, classified for the retry policy.

The client never retries by itself (``max_retries=0``): the sampler owns retries so that every
attempt passes through the shared rate limiter and budget. Error text is scrubbed of the key.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

OutcomeKind = Literal["ok", "rate_limited", "transient", "bad_request", "auth"]
Api = Literal["completions", "chat"]

_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")


@dataclass(frozen=True)
class TeacherRequest:
    """Everything that determines a teacher response (all of it goes into the request key)."""

    api: Api
    model: str
    prompt: str
    messages: tuple[tuple[str, str], ...]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    logprobs: bool
    seed: int

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.api == "chat":
            body["messages"] = [{"role": r, "content": c} for r, c in self.messages]
            if self.logprobs:
                body["logprobs"] = True
        else:
            body["prompt"] = self.prompt
            if self.logprobs:
                body["logprobs"] = 1
        return body


@dataclass(frozen=True)
class CallOutcome:
    kind: OutcomeKind
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str = ""
    retry_after_s: float = 0.0
    limit_rpm: float = 0.0
    limit_tpm: float = 0.0
    latency_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    text: str
    finish_reason: str | None
    token_logprobs: list[float] | None


def redact(text: str, secret: str | None) -> str:
    """Remove the key (and anything shaped like one) from provider error text."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def _retry_after(headers: Any) -> float:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return 1.0  # a 429 without a hint: a short, bounded pause


def _limit(headers: Any, name: str) -> float:
    try:
        return float(headers.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0


async def call_teacher(
    client: openai.AsyncOpenAI,
    request: TeacherRequest,
    *,
    timeout_s: float,
    idempotency_key: str | None = None,
    secret: str | None = None,
) -> CallOutcome:
    """Send one request; never raises for provider or network failures (they become outcomes)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = request.body()
    try:
        if request.api == "chat":
            raw = await client.chat.completions.with_raw_response.create(
                **body, extra_headers=headers, timeout=timeout_s
            )
        else:
            raw = await client.completions.with_raw_response.create(
                **body, extra_headers=headers, timeout=timeout_s
            )
        latency = raw.elapsed.total_seconds()
        rpm, tpm = (
            _limit(raw.headers, "x-ratelimit-limit-requests"),
            _limit(raw.headers, "x-ratelimit-limit-tokens"),
        )
        try:
            parsed = json.loads(raw.text)
            if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
                raise ValueError("no 'choices' list")
        except ValueError as e:
            return CallOutcome(
                "transient", raw.status_code, error=f"malformed response body ({e})", latency_s=latency
            )
        usage = parsed.get("usage") or {}
        return CallOutcome(
            "ok",
            raw.status_code,
            body=parsed,
            limit_rpm=rpm,
            limit_tpm=tpm,
            latency_s=latency,
            usage={k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        )
    except openai.RateLimitError as e:
        h = e.response.headers
        return CallOutcome(
            "rate_limited",
            429,
            error=redact(e.message, secret),
            retry_after_s=_retry_after(h),
            limit_rpm=_limit(h, "x-ratelimit-limit-requests"),
            limit_tpm=_limit(h, "x-ratelimit-limit-tokens"),
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        return CallOutcome("auth", e.status_code, error=redact(e.message, secret))
    except openai.APIStatusError as e:
        kind: OutcomeKind = (
            "transient" if e.status_code >= 500 or e.status_code in (408, 409) else "bad_request"
        )
        return CallOutcome(kind, e.status_code, error=redact(e.message, secret))
    except openai.APITimeoutError:
        return CallOutcome("transient", None, error=f"timed out after {timeout_s:g}s")
    except openai.APIConnectionError as e:
        return CallOutcome("transient", None, error=redact(f"connection error: {e.__cause__ or e}", secret))


def samples_from_body(api: Api, body: dict[str, Any]) -> list[Sample]:
    """The n samples of a stored response body, in ``index`` order (pure; used by the corpus)."""
    out: list[tuple[int, Sample]] = []
    for i, choice in enumerate(body.get("choices") or []):
        index = int(choice.get("index", i))
        if api == "chat":
            text = (choice.get("message") or {}).get("content") or ""
            lp = choice.get("logprobs") or {}
            content = lp.get("content") if isinstance(lp, dict) else None
            logprobs = [float(t["logprob"]) for t in content] if content else None
        else:
            text = choice.get("text") or ""
            lp = choice.get("logprobs") or {}
            values = lp.get("token_logprobs") if isinstance(lp, dict) else None
            logprobs = [float(x) for x in values if x is not None] if values else None
        out.append((index, Sample(text, choice.get("finish_reason"), logprobs)))
    return [s for _, s in sorted(out, key=lambda p: p[0])]


def mean_logprob(sample: Sample) -> float | None:
    if not sample.token_logprobs:
        return None
    value = sum(sample.token_logprobs) / len(sample.token_logprobs)
    return value if math.isfinite(value) else None
