"""``Idempotency-Key`` support, as payment APIs and some LLM gateways offer it.

A request whose key was already answered gets the stored response again, unbilled; one whose
key is still being answered waits for that answer. A client that sends its request key can then
resume after a crash without paying again even for the calls that were in flight when it died.
Providers without this feature are emulated with ``--no-idempotency`` (``idempotency: false``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any


class IdempotencyCache:
    """Answered bodies by key (bounded, oldest evicted) and the keys being answered right now."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._done: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def claim(self, key: str) -> dict[str, Any] | None:
        """The stored body for ``key``, or ``None`` after marking ``key`` as being answered by the caller.

        A caller that gets ``None`` must call ``release`` (with or without a body) when done.
        """
        while True:
            if key in self._done:
                return self._done[key]
            waiter = self._pending.get(key)
            if waiter is None:
                self._pending[key] = asyncio.get_running_loop().create_future()
                return None
            await asyncio.shield(waiter)  # the first caller finished (or failed): look again

    def release(self, key: str, body: dict[str, Any] | None) -> None:
        if body is not None:
            self._done[key] = body
            self._done.move_to_end(key)
            while len(self._done) > self.max_entries:
                self._done.popitem(last=False)
        waiter = self._pending.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
