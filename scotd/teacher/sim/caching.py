"""Prompt caching, reported as OpenAI does: ``usage.prompt_tokens_details.cached_tokens``.

A prompt's tokens (``GenRequest.prompt_token_list``: the completions prompt, or every chat message
with its 4 framing tokens, in order) are cut into blocks of ``increment`` tokens from the start.
Block k's key is a chained sha256 over the scope (model and ``prompt_cache_key``) and every token
up to the end of block k, so each key costs one block of hashing. A request's cached tokens are
the blocks of its longest prefix whose keys were stored within ``ttl_s`` — the prefix it shares
with an earlier prompt, rounded down to a multiple of ``increment`` — or 0 when that is below
``min_tokens``. Then every full block of the request is stored (or refreshed) with the current
time. Memory is bounded: at most ``max_blocks`` keys, the least recently used dropped first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

DEFAULT_MAX_BLOCKS = 500_000  # about 64M distinct prefix tokens at 128 a block; ~60 MB of keys


class PrefixCache:
    """Seen prompt prefixes by block key, oldest use first; single-threaded use from the event loop."""

    def __init__(
        self,
        min_tokens: int,
        increment: int,
        ttl_s: float,
        max_blocks: int = DEFAULT_MAX_BLOCKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if increment < 1 or max_blocks < 1:
            raise ValueError("increment and max_blocks must be >= 1")
        self.min_tokens, self.increment, self.ttl_s = min_tokens, increment, ttl_s
        self.max_blocks = max_blocks
        self._clock = clock
        self._blocks: OrderedDict[bytes, float] = OrderedDict()  # key -> last used, oldest first

    def __len__(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()

    def _expire(self, now: float) -> None:
        while self._blocks:
            key, used = next(iter(self._blocks.items()))
            if used + self.ttl_s > now:
                return
            del self._blocks[key]

    def observe(self, scope: str, tokens: Sequence[str]) -> int:
        """Cached tokens of a prompt of ``tokens`` under ``scope``; then remember its prefixes."""
        now = self._clock()
        self._expire(now)
        digest = hashlib.sha256(scope.encode("utf-8", "surrogatepass")).digest()
        hit_blocks, hitting = 0, True
        keys: list[bytes] = []
        for k in range(len(tokens) // self.increment):
            block = tokens[k * self.increment : (k + 1) * self.increment]
            # Length-prefixed, so no two token sequences hash the same text.
            text = "".join(f"{len(t)}:{t}" for t in block)
            digest = hashlib.sha256(digest + text.encode("utf-8", "surrogatepass")).digest()
            if hitting and digest in self._blocks:
                hit_blocks = k + 1
            else:
                hitting = False
            keys.append(digest)
        for key in keys:
            self._blocks[key] = now
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.max_blocks:
            self._blocks.popitem(last=False)
        cached = hit_blocks * self.increment
        return cached if cached >= self.min_tokens else 0
