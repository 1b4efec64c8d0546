"""HTTP handlers of ``/v1/files`` and ``/v1/batches`` (OpenAI's shapes; see ``files``, ``batches``).

- ``POST /v1/files``: multipart ``file`` (a ``.jsonl`` name) and ``purpose`` ("batch"; anything
  else is a 400); larger than ``batch_max_file_bytes`` or past ``files_max_total_bytes``: a 413;
- ``GET /v1/files`` (``purpose``, ``limit`` 1..10000, ``order`` asc|desc, ``after``),
  ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content`` (the raw bytes), ``DELETE /v1/files/{id}``;
- ``POST /v1/batches`` (``input_file_id``, ``endpoint`` /v1/completions or /v1/chat/completions,
  ``completion_window`` "24h", ``metadata``), ``GET /v1/batches`` (``limit`` 1..100, ``after``;
  newest first), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``.

Handlers raise ``ApiError``; the server turns it into an OpenAI-shaped JSON error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from scotd.teacher.sim.batches import BatchRunner
from scotd.teacher.sim.files import MAX_FILE_LIST, FileStore, page_limit
from scotd.teacher.sim.openai_api import ApiError, invalid
from scotd.teacher.sim.stats import Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PARTS = 8  # form fields read from one upload
_CHUNK = 1 << 16
_SMALL_FIELD = 256  # bytes of a form field other than the file
_DRAIN_LIMIT = 64 << 20  # an oversized upload is read (and dropped) this far so the 413 arrives


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; a 400 ``ApiError`` when it is not JSON or nests too deeply."""
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise invalid("the body is not valid JSON") from None
    except RecursionError:
        raise invalid("the body's JSON nests too deeply") from None


async def _read_part(part: BodyPartReader, limit: int, too_big: ApiError) -> bytes:
    """The part's bytes, at most ``limit``; past it, drain a bounded amount, then raise ``too_big``."""
    buf = bytearray()
    while True:
        chunk = await part.read_chunk(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            drained = len(buf)
            while drained < _DRAIN_LIMIT and (chunk := await part.read_chunk(_CHUNK)):
                drained += len(chunk)
            raise too_big


class BatchApi:
    def __init__(self, files: FileStore, runner: BatchRunner, stats: Stats, max_file_bytes: int) -> None:
        self.files, self.runner, self.stats = files, runner, stats
        self.max_file_bytes = max_file_bytes

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``(method, path, handler)`` for the server to add (behind its auth and error handling)."""
        return [
            ("POST", "/v1/files", self.upload),
            ("GET", "/v1/files", self.list_files),
            ("GET", "/v1/files/{file_id}", self.get_file),
            ("DELETE", "/v1/files/{file_id}", self.delete_file),
            ("GET", "/v1/files/{file_id}/content", self.file_content),
            ("POST", "/v1/batches", self.create_batch),
            ("GET", "/v1/batches", self.list_batches),
            ("GET", "/v1/batches/{batch_id}", self.get_batch),
            ("POST", "/v1/batches/{batch_id}/cancel", self.cancel_batch),
        ]

    # --- files --------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise invalid("upload the file as multipart/form-data with the fields 'file' and 'purpose'")
        too_big = ApiError(
            413,
            f"The file is larger than this server's limit of {self.max_file_bytes} bytes (batch_max_file_bytes).",
            "invalid_request_error",
            "file",
            "file_too_large",
        )
        field_too_big = invalid(f"a form field other than 'file' is over {_SMALL_FIELD} bytes")
        purpose: str | None = None
        filename: str | None = None
        content: bytes | None = None
        try:
            reader = await request.multipart()
            for _ in range(MAX_PARTS):
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    raise invalid("nested multipart bodies are not supported")
                if part.name == "file":
                    filename = part.filename or ""
                    content = await _read_part(part, self.max_file_bytes, too_big)
                else:
                    value = await _read_part(part, _SMALL_FIELD, field_too_big)
                    if part.name == "purpose":
                        purpose = value.decode("utf-8", "replace")
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError):  # a malformed multipart
            raise invalid("the multipart body is malformed") from None
        if content is None:
            raise invalid("you must provide a file", "file")
        if purpose is None:
            raise invalid("you must provide a purpose", "purpose")
        if purpose != "batch":
            raise invalid(
                f"teacher-sim stores files for purpose 'batch' only, not '{purpose[:40]}'", "purpose"
            )
        if not (filename or "").endswith(".jsonl"):
            raise invalid("Invalid file format for Batch API. Must be .jsonl", "file")
        stored = self.files.add(filename or "", "batch", content)
        return web.json_response(stored.object())

    async def list_files(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid("order must be 'asc' or 'desc'", "order")
        limit = page_limit(query.get("limit"), MAX_FILE_LIST, MAX_FILE_LIST)
        page = self.files.page(query.get("purpose"), limit, query.get("after"), newest_first=order == "desc")
        return web.json_response(page)

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.files.get(request.match_info["file_id"]).object())

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        self.files.delete(file_id)
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        stored = self.files.get(request.match_info["file_id"])
        return web.Response(body=stored.content, content_type="application/octet-stream")

    # --- batches ------------------------------------------------------------------------------

    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        batch = self.runner.create(await read_json(request))
        self.stats.batches_created += 1
        return web.json_response(batch.object())

    async def list_batches(self, request: web.Request) -> web.StreamResponse:
        limit = page_limit(request.query.get("limit"), 20, 100)
        return web.json_response(self.runner.page(limit, request.query.get("after")))

    async def get_batch(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.runner.get(request.match_info["batch_id"]).object())

    async def cancel_batch(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.runner.cancel(request.match_info["batch_id"]).object())
