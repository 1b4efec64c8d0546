"""A body limit in Ray Serve's HTTP proxy itself, before any application sees the request.

Ray's proxy reads a request body into memory as fast as the client sends it, whatever the
application does; the ingress's own ``max_body_bytes`` (a 413) cannot stop that. Ray calls the
function named by ``$RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in every proxy for ASGI
middlewares, so on every node that runs a proxy set

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve.proxy_limits:middlewares
    SCOTD_PROXY_MAX_BODY_BYTES=1048576          # optional; the default

(``scotd serve`` sets the first for the cluster it starts). Past the limit the proxy stops reading:
a declared ``Content-Length`` over it is a 413 at once; a chunked body is ended there, and the
application, whose ``max_body_bytes`` is no higher (``ServeConfig`` keeps it at most 1 MiB), answers
413 on what it got.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "serve.proxy_limits:middlewares"
LIMIT_ENV = "SCOTD_PROXY_MAX_BODY_BYTES"
DEFAULT_LIMIT = 1 << 20  # above any application's max_body_bytes, so the application answers first


class BodyLimit:
    """Pure ASGI middleware: at most ``max_bytes`` of any request body are read from the client."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_LIMIT) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        cut = False

        async def limited() -> Message:
            nonlocal seen, cut
            if cut:  # read nothing more from this client; the response ends the request
                await asyncio.Event().wait()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # End the body with this chunk: the application, whose own limit is no
                    # higher, has more than it accepts and answers 413.
                    cut = True
                    return {**message, "more_body": False}
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": f"request body is over {self.max_bytes} bytes",
                    "type": "invalid_request_error",
                    "param": None,
                }
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def middlewares() -> list[Any]:
    """What Ray's proxy calls (``$RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(BodyLimit, max_bytes=int(os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT))]


def proxy_env() -> dict[str, str]:
    """The environment a proxy needs for this limit (for a cluster this process starts)."""
    return {CALLBACK_ENV: CALLBACK}
