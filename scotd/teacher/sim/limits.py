"""Requests-per-minute and tokens-per-minute limits over a sliding window, with OpenAI's headers.

A window of ``window_s`` seconds holds at most ``max(1, floor(rpm * window_s / 60))`` requests
and ``max(1, floor(tpm * window_s / 60))`` tokens (a limit of 0 means unlimited), so tests can use
a 2-second window with the same per-minute flags. A request's cost is its prompt tokens plus every
completion token it produced; only admitted requests enter the window (a 429 is not billed).
A request costing more than the whole token capacity can never fit: it gets a 429 saying so.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

LimitKind = Literal["requests", "tokens"]


def format_duration(seconds: float) -> str:
    """OpenAI's reset-header format: ``120ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    sec_text = f"{round(secs, 3):g}s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes >= 1:
        return f"{int(minutes)}m{sec_text}"
    return sec_text


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused and when retrying can succeed (``retry_after_s`` > 0)."""

    kind: LimitKind
    retry_after_s: float
    message: str


class SlidingWindowLimiter:
    """Admits requests while the last ``window_s`` seconds stay under both capacities."""

    def __init__(
        self, rpm: int, tpm: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.rpm, self.tpm = rpm, tpm
        self.max_requests = max(1, math.floor(rpm * window_s / 60)) if rpm > 0 else None
        self.max_tokens = max(1, math.floor(tpm * window_s / 60)) if tpm > 0 else None
        self._clock = clock
        self._entries: deque[tuple[float, int]] = deque()  # (admitted at, tokens)
        self._tokens_used = 0

    def _expire(self, now: float) -> None:
        while self._entries and self._entries[0][0] + self.window_s <= now:
            self._tokens_used -= self._entries.popleft()[1]

    def admit(self, tokens: int) -> Rejection | None:
        """Record and return ``None`` when ``tokens`` fit now; else a ``Rejection`` (nothing recorded)."""
        now = self._clock()
        self._expire(now)
        waits: list[Rejection] = []
        if self.max_requests is not None and len(self._entries) >= self.max_requests:
            # The request that must leave the window for one more to fit.
            oldest_needed = self._entries[len(self._entries) - self.max_requests][0]
            waits.append(
                Rejection(
                    "requests",
                    oldest_needed + self.window_s - now,
                    f"Rate limit reached for requests: limit {self.max_requests} per {self.window_s:g}s, "
                    f"used {len(self._entries)}.",
                )
            )
        if self.max_tokens is not None and tokens > self.max_tokens:
            return Rejection(
                "tokens",
                self.window_s,
                f"Request too large for tokens per {self.window_s:g}s: limit {self.max_tokens}, "
                f"requested {tokens}. Reduce the prompt, max_tokens or n.",
            )
        if self.max_tokens is not None and self._tokens_used + tokens > self.max_tokens:
            freed, until = 0, now
            for at, cost in self._entries:
                freed += cost
                until = at + self.window_s
                if self._tokens_used - freed + tokens <= self.max_tokens:
                    break
            waits.append(
                Rejection(
                    "tokens",
                    until - now,
                    f"Rate limit reached for tokens: limit {self.max_tokens} per {self.window_s:g}s, "
                    f"used {self._tokens_used}, requested {tokens}.",
                )
            )
        if waits:
            return max(waits, key=lambda r: r.retry_after_s)
        self._entries.append((now, tokens))
        self._tokens_used += tokens
        return None

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` headers (limits that are set only).

        As OpenAI: ``limit`` is the per-minute limit; ``remaining`` is what is left of the window,
        scaled to a minute so that both read in the same unit whatever ``window_s`` is.
        """
        scale = 60.0 / self.window_s
        now = self._clock()
        self._expire(now)
        # The window is back to its initial state once the newest admitted request leaves it.
        reset = format_duration(self._entries[-1][0] + self.window_s - now if self._entries else 0.0)
        out: dict[str, str] = {}
        if self.max_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.rpm)
            left = max(0, self.max_requests - len(self._entries))
            out["x-ratelimit-remaining-requests"] = str(int(left * scale))
            out["x-ratelimit-reset-requests"] = reset
        if self.max_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.tpm)
            left = max(0, self.max_tokens - self._tokens_used)
            out["x-ratelimit-remaining-tokens"] = str(int(left * scale))
            out["x-ratelimit-reset-tokens"] = reset
        return out


def retry_headers(retry_after_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (ceil, at least 1) and ``retry-after-ms``."""
    return {
        "Retry-After": str(max(1, math.ceil(retry_after_s))),
        "retry-after-ms": str(max(1, math.ceil(retry_after_s * 1000))),
    }
