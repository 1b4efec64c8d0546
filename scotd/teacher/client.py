"""One teacher call through the official ``openai`` async client, classified for the retry policy.

The client never retries by itself (``max_retries=0``): the sampler owns retries so that every
attempt passes through the shared rate limiter and budget. Error text is scrubbed of the key.

A 2xx answer is returned as raw text, uninterpreted, so the caller can make it durable first;
``interpret`` (pure, total: it never raises) then reads a stored body however odd the provider
was: usage missing, null, a string or numbers as strings; fewer choices than ``n``; not JSON; an
HTML page from a proxy; an ``error`` object sent with a 200.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from scotd.teacher.ratelimit import RateHeaders

if TYPE_CHECKING:
    import openai

OutcomeKind = Literal["ok", "rate_limited", "transient", "bad_request", "auth"]
Api = Literal["completions", "chat"]

_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")
# Request fields an endpoint may reject and that the sampler can leave out (``teacher.omit_fields``);
# model, prompt/messages, n and max_tokens are what is being bought and always go.
OMITTABLE_FIELDS = ("seed", "top_p", "stop", "logprobs", "temperature", "prompt_cache_key")


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
    # Routes requests of one shared prompt prefix to the same provider cache (OpenAI's
    # ``prompt_cache_key``); "" = none. Not part of the request key: it does not change the answer.
    cache_key: str = ""

    def body(self, omit: Collection[str] = ()) -> dict[str, Any]:
        """The JSON body, without the fields in ``omit`` (names from ``OMITTABLE_FIELDS``)."""
        body: dict[str, Any] = {
            "model": self.model,
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.cache_key:
            body["prompt_cache_key"] = self.cache_key
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
        return {k: v for k, v in body.items() if k not in omit}


@dataclass(frozen=True)
class CallOutcome:
    """``kind == "ok"``: an HTTP 2xx arrived; ``raw_body`` is its text, not yet interpreted.

    ``rate``: the answer's ``x-ratelimit-*`` headers (any answer that had them: 2xx, 429, 5xx).
    """

    kind: OutcomeKind
    status: int | None = None
    raw_body: str = ""
    error: str = ""
    retry_after_s: float = 0.0
    rate: RateHeaders = field(default_factory=RateHeaders)
    latency_s: float = 0.0


USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Interpretation:
    """What a stored 2xx body holds.

    ``body``: the parsed response, or ``None`` when it holds no answer (``unusable`` says why).
    ``usage``: the provider's token counts, ``None`` when missing or malformed (``problems`` says which).
    ``problems``: odd but usable: ``usage_missing``, ``usage_malformed``, ``short_choices``.
    """

    body: dict[str, Any] | None
    usage: dict[str, int] | None
    choices: int = 0
    problems: tuple[str, ...] = ()
    unusable: str = ""


def _token_count(value: Any) -> int | None:
    """An int from an int, an integral float or a numeric string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0 and value == int(value):
        return int(value)
    return None


def _usage(raw: Any) -> tuple[dict[str, int] | None, str]:
    if raw is None:
        return None, "usage_missing"
    if not isinstance(raw, dict):
        return None, "usage_malformed"
    prompt, completion = _token_count(raw.get("prompt_tokens")), _token_count(raw.get("completion_tokens"))
    if prompt is None or completion is None:
        return None, "usage_malformed"
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    # Prompt tokens the provider served from its cache (billed at the cached-input price); an
    # odd value counts as none (full price: a budget is never under-charged).
    details = raw.get("prompt_tokens_details")
    cached = _token_count(details.get("cached_tokens")) if isinstance(details, dict) else None
    if cached:
        usage["cached_tokens"] = min(cached, prompt)
    return usage, ""


def _unusable(reason: str) -> Interpretation:
    return Interpretation(None, None, unusable=reason)


def interpret(raw_body: str, n: int) -> Interpretation:
    """Read a 2xx body that was asked for ``n`` samples. Pure and total: never raises."""
    try:
        parsed = json.loads(raw_body)
    except (ValueError, RecursionError):
        head = raw_body.lstrip()[:200].lower()
        if head.startswith(("<!doctype", "<html")) or "<html" in head:
            return _unusable("an HTML page, not JSON (a proxy's error page?)")
        return _unusable(f"not JSON ({len(raw_body)} bytes)")
    return inspect_body(parsed, n)


def inspect_body(parsed: Any, n: int) -> Interpretation:
    """``interpret`` for an already parsed body (ledger records written before raw bodies were kept)."""
    if not isinstance(parsed, dict):
        return _unusable(f"a JSON {type(parsed).__name__}, not an object")
    choices = parsed.get("choices")
    if not isinstance(choices, list):
        error = parsed.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            return _unusable(f"an error object with HTTP 2xx: {str(message)[:200]}")
        return _unusable("no 'choices' list")
    usage, usage_problem = _usage(parsed.get("usage"))
    problems = [usage_problem] if usage_problem else []
    if len(choices) < n:
        problems.append("short_choices")
    return Interpretation(parsed, usage, len(choices), tuple(problems))


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


async def call_teacher(
    client: openai.AsyncOpenAI,
    request: TeacherRequest,
    *,
    timeout_s: float,
    idempotency_key: str | None = None,
    secret: str | None = None,
    omit: Collection[str] = (),
) -> CallOutcome:
    """Send one request without the fields in ``omit``; never raises for provider or network
    failures (they become outcomes)."""
    import openai  # here, not at the top: the request and body helpers above are pure

    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = request.body(omit)
    try:
        if request.api == "chat":
            raw = await client.chat.completions.with_raw_response.create(
                **body, extra_headers=headers, timeout=timeout_s
            )
        else:
            raw = await client.completions.with_raw_response.create(
                **body, extra_headers=headers, timeout=timeout_s
            )
        # Nothing is interpreted here: the caller stores the text before anyone reads it.
        return CallOutcome(
            "ok",
            raw.status_code,
            raw_body=raw.text,
            rate=RateHeaders.parse(raw.headers),
            latency_s=raw.elapsed.total_seconds(),
        )
    except openai.RateLimitError as e:
        h = e.response.headers
        return CallOutcome(
            "rate_limited",
            429,
            error=redact(e.message, secret),
            retry_after_s=_retry_after(h),
            rate=RateHeaders.parse(h),
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        return CallOutcome("auth", e.status_code, error=redact(e.message, secret))
    except openai.APIStatusError as e:
        kind: OutcomeKind = (
            "transient" if e.status_code >= 500 or e.status_code in (408, 409) else "bad_request"
        )
        return CallOutcome(
            kind, e.status_code, error=redact(e.message, secret), rate=RateHeaders.parse(e.response.headers)
        )
    except openai.APITimeoutError:
        return CallOutcome("transient", None, error=f"timed out after {timeout_s:g}s")
    except openai.APIConnectionError as e:
        return CallOutcome("transient", None, error=redact(f"connection error: {e.__cause__ or e}", secret))


def _floats(values: Any) -> list[float] | None:
    if not isinstance(values, list):
        return None
    out = [_float(v) for v in values if v is not None]
    return None if not out or any(v is None for v in out) else [v for v in out if v is not None]


def _float(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("logprob")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def samples_from_body(api: Api, body: dict[str, Any]) -> list[Sample]:
    """The samples of a stored response body, in ``index`` order (pure; used by the corpus).

    Tolerant of odd providers: a choice that is not an object, or whose text is not a string,
    becomes an empty sample; log-probs that are not numbers are dropped (``None``).
    """
    out: list[tuple[int, int, Sample]] = []
    choices = body.get("choices")
    for i, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, dict):
            choice = {}
        index = choice.get("index", i)
        index = index if isinstance(index, int) and not isinstance(index, bool) else i
        lp = choice.get("logprobs")
        lp = lp if isinstance(lp, dict) else {}
        if api == "chat":
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            logprobs = _floats(lp.get("content"))
        else:
            text = choice.get("text")
            logprobs = _floats(lp.get("token_logprobs"))
        finish = choice.get("finish_reason")
        sample = Sample(
            text if isinstance(text, str) else "", finish if isinstance(finish, str) else None, logprobs
        )
        out.append((index, i, sample))
    return [s for _, _, s in sorted(out, key=lambda p: (p[0], p[1]))]


def mean_logprob(sample: Sample) -> float | None:
    if not sample.token_logprobs:
        return None
    value = sum(sample.token_logprobs) / len(sample.token_logprobs)
    return value if math.isfinite(value) else None
