"""The lines of a batch: checking an input line, and writing output and error lines, as OpenAI.

Input line: ``{"custom_id": str, "method": "POST", "url": <the batch's endpoint>, "body": {...}}``.
A file is checked whole before any line runs; each bad line is a ``BatchError``-shaped dict
(``code``, ``message``, ``param``, ``line``: 1-based line of the file; blank lines are skipped
but counted) and any of them fails the batch: ``invalid_json_line``, ``missing_required_parameter``
(``custom_id`` or ``body``), ``duplicate_custom_id``, ``invalid_method``, ``url_mismatch``,
``model_mismatch`` (the body's ``model`` is not the model this server serves), and for the
file as a whole ``empty_file`` and ``too_many_tasks``. A body the online route would refuse
(``n`` above ``max_n``, too long a context, ...) passes the check and gets its 400 in the error
file when its line runs, as on OpenAI.

Output line (a 200): ``{"id": "batch_req_...", "custom_id", "response": {"status_code": 200,
"request_id", "body": <the completion>}, "error": null}``; an error-file line has the same shape
with a non-200 ``status_code`` and an ``{"error": {...}}`` body, or ``"response": null`` and
``"error": {"code": "batch_expired" | "batch_cancelled", "message"}`` for a line that never ran.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from scotd.teacher.sim.openai_api import ApiError, parse_request

# The endpoints a batch may name, and whether they are chat.
ENDPOINTS = {"/v1/completions": False, "/v1/chat/completions": True}
MAX_ERRORS_LISTED = 100  # a batch's ``errors`` lists at most this many (checking stops there)

Unfinished = Literal["batch_expired", "batch_cancelled"]
UNFINISHED_MESSAGES: dict[Unfinished, str] = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
LINE_FAILURE = ApiError(
    500, "The server had an error while processing your request. Sorry about that!", "server_error"
)


@dataclass(frozen=True)
class LineRef:
    """A checked line: its ``custom_id`` and where it lies in the input file's bytes."""

    custom_id: str
    start: int
    end: int


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def iter_lines(content: bytes) -> Iterator[tuple[int, int, int]]:
    """``(line number, start, end)`` of every non-blank line (1-based numbers count blank lines)."""
    pos, number, size = 0, 0, len(content)
    while pos < size:
        end = content.find(b"\n", pos)
        end = size if end < 0 else end
        number += 1
        if content[pos:end].strip():
            yield number, pos, end
        pos = end + 1


def check_line(
    raw: bytes,
    number: int,
    *,
    endpoint: str,
    model: str,
    seen: set[str],
    max_n: int,
    context_tokens: int,
) -> tuple[str, int] | dict[str, Any]:
    """``(custom_id, estimated tokens)`` of a good line, else its batch error.

    The estimate is what OpenAI enqueues: prompt tokens + ``n`` x ``max_tokens`` (0 for a body
    that will get a 400 when it runs). ``seen`` collects the custom_ids so far.
    """
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        return batch_error("invalid_json_line", "This line is not parseable as valid JSON.", number)
    if not isinstance(line, dict):
        return batch_error("invalid_json_line", "This line is not a JSON object.", number)
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return batch_error(
            "missing_required_parameter", "Each line needs a non-empty string custom_id.", number, "custom_id"
        )
    if custom_id in seen:
        return batch_error(
            "duplicate_custom_id",
            "The custom_id for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each request in a batch.",
            number,
            "custom_id",
        )
    seen.add(custom_id)
    if line.get("method") != "POST":
        return batch_error("invalid_method", "The method of every request must be POST.", number, "method")
    if line.get("url") != endpoint:
        return batch_error(
            "url_mismatch",
            f"The URL provided for this request does not match the batch endpoint {endpoint}.",
            number,
            "url",
        )
    body = line.get("body")
    if not isinstance(body, dict):
        return batch_error(
            "missing_required_parameter", "Each line needs a JSON object body.", number, "body"
        )
    if body.get("model") != model:
        return batch_error(
            "model_mismatch",
            f"The model of this request is not '{model}', the model this server serves; "
            "every request of a batch must use it.",
            number,
            "body.model",
        )
    try:
        req = parse_request(body, chat=ENDPOINTS[endpoint], max_n=max_n, context_tokens=context_tokens)
    except ApiError:
        return custom_id, 0
    return custom_id, req.prompt_tokens + req.n * req.max_tokens


def _line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> bytes:
    obj = {
        "id": "batch_req_" + uuid.uuid4().hex,
        "custom_id": custom_id,
        "response": response,
        "error": error,
    }
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def result_line(custom_id: str, status_code: int, body: dict[str, Any]) -> bytes:
    """A line that ran: a 200 goes to the output file, anything else to the error file."""
    response = {"status_code": status_code, "request_id": uuid.uuid4().hex, "body": body}
    return _line(custom_id, response, None)


def unfinished_line(custom_id: str, code: Unfinished) -> bytes:
    """An error-file line for a request the batch never ran (expired or cancelled first)."""
    return _line(custom_id, None, {"code": code, "message": UNFINISHED_MESSAGES[code]})
