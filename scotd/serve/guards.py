"""The ingress's edges, apart from the model: the one error shape, bearer auth and bounded body reads.

Every answer the service gives instead of a result is ``{"error": {"message", "type", "param"}}``
(OpenAI's shape; ``param`` names the offending field when there is one), never a stack trace.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

RETRY_AFTER_S = 1  # what a 503 tells the client to wait before retrying


def error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    body = {"error": {"message": message, "type": kind, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def unauthorized() -> JSONResponse:
    return error(
        401, "missing or wrong bearer token", "authentication_error", headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_ok(request: Request, token: str | None) -> bool:
    """True when no token is configured or the request carries it (compared in constant time)."""
    if token is None:
        return True
    given = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


async def read_body(request: Request, limit: int) -> bytes | JSONResponse:
    """The body, read at most ``limit`` bytes far: a declared or streamed (chunked) excess is a 413
    as soon as it shows, without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return error(400, "the Content-Length header is not a number", param="content-length")
        if int(declared) > limit:
            return error(413, f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, f"request body is over {limit} bytes; the limit is {limit}")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to read the answer
        return error(400, "the client disconnected before the body was complete")
    return b"".join(chunks)


def explain(e: ValidationError) -> tuple[str, str | None]:
    """A validation error as ``(message, first offending field)``."""
    problems: list[str] = []
    params: list[str] = []
    for item in e.errors():
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "json_invalid":
            problems.append(f"the body is not valid JSON ({item['msg']})")
        elif item["type"] == "model_type" and not loc:
            problems.append("the body must be a JSON object")
        else:
            problems.append(f"{loc or 'body'}: {item['msg']}")
            params.append(loc)
    return "; ".join(problems), (params[0] if params else None)


def json_error_body(status: int, detail: Any) -> JSONResponse:
    """Starlette's own HTTP errors (a 404 or 405 raised before our routes) in the service's shape."""
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return error(status, str(detail), kind)
