"""The one HTTP client of scotd's own code, tests and benchmarks (``openai`` aside): ``http_json``.

    reply = http_json("POST", f"{url}/v1/answer", {"question": "...", "choices": ["a", "b"]}, timeout=60)
    reply.status, reply.headers["retry-after"], reply.body["answer"], reply.text

One request, one connection, every status returned (4xx and 5xx included), never raised. Only an
exchange that fails raises, always an ``OSError``: refused, reset, timed out, or a malformed reply.
A server that answers before reading the whole body (a 413) and stops reading: its answer is the
reply, not the broken pipe.

Standard library only, on ``http.client`` (what ``urllib.request`` wraps) because callers must know
exactly what goes on the wire: no proxy from the environment (our servers are on loopback), no
redirects followed, and no header added beyond ``Host``, ``Content-Length`` and ``Accept-Encoding:
identity`` (a raw body goes out without a ``Content-Type`` unless given one; ``urllib.request``
would add a form type).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 30.0


class HttpReply(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "
    body: Any  # the body parsed as JSON, or ``text`` when it is not JSON
    text: str  # the body decoded as UTF-8 (undecodable bytes replaced)


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str | bytes] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> HttpReply:
    """Send ``body`` as JSON (``Content-Type: application/json`` unless ``headers`` set one), or
    ``data`` as it is, or nothing; ``timeout`` bounds the connect and each read and write."""
    if body is not None and data is not None:
        raise ValueError("give a JSON body or raw data, not both")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    sent_headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in sent_headers):
            sent_headers["Content-Type"] = "application/json"
    connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = connection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.request(method, target, body=data, headers=sent_headers)
        except OSError as unsent:
            if conn.sock is None:  # never connected
                raise
            # The server may have answered early and stopped reading (a 413 for a declared length):
            # its answer is the reply. Without one, the send error stands.
            try:
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raise unsent from None
        else:
            response = conn.getresponse()
            raw = response.read()
    except http.client.HTTPException as e:  # a malformed or cut-off reply
        if isinstance(e, OSError):  # RemoteDisconnected is a ConnectionResetError already
            raise
        raise ConnectionError(f"{method} {url}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()
    return _reply(response, raw)


def _reply(response: http.client.HTTPResponse, raw: bytes) -> HttpReply:
    reply_headers: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        reply_headers[key] = f"{reply_headers[key]}, {value}" if key in reply_headers else value
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = text
    return HttpReply(response.status, reply_headers, parsed, text)
