"""In-memory files of the Batch API: what ``/v1/files`` stores and batches read and write.

Uploads (``purpose`` "batch", a ``.jsonl`` name, at most ``batch_max_file_bytes``) and the
outputs the server writes (``batch_output``) live in one dict; together they may hold at most
``files_max_total_bytes``: an upload past it is a 413 (delete files to make room). The server's
own output files are always kept (their size is bounded by the batches that produce them).
The file object is OpenAI's: ``id`` ("file-..."), ``object`` "file", ``bytes``, ``created_at``,
``filename``, ``purpose``, ``status`` "processed", ``expires_at``, ``status_details``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from scotd.teacher.sim.openai_api import ApiError, invalid

Purpose = Literal["batch", "batch_output"]
MAX_FILE_LIST = 10_000  # OpenAI's largest page of files
FILE_TTL_S = 30 * 24 * 3600  # batch files expire after 30 days, as on OpenAI (reported only)


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: Purpose
    created_at: int
    content: bytes

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.created_at + FILE_TTL_S,
            "status_details": None,
        }


def not_found(kind: str, object_id: str, param: str | None = None) -> ApiError:
    shown = object_id if len(object_id) <= 64 else object_id[:61] + "..."
    return ApiError(404, f"No such {kind}: '{shown}'", "invalid_request_error", param, "not_found")


class FileStore:
    """Files by id, in upload order; single-threaded use from the event loop."""

    def __init__(self, max_total_bytes: int) -> None:
        self.max_total_bytes = max_total_bytes
        self.total_bytes = 0
        self._files: dict[str, StoredFile] = {}

    def add(self, filename: str, purpose: Purpose, content: bytes, *, upload: bool = True) -> StoredFile:
        """Store ``content``; an upload past the total cap is a 413 (``ApiError``)."""
        if upload and self.total_bytes + len(content) > self.max_total_bytes:
            raise ApiError(
                413,
                f"File storage is full: {self.total_bytes} of {self.max_total_bytes} bytes used, "
                f"this file needs {len(content)}. Delete files (DELETE /v1/files/ID) to make room.",
                "invalid_request_error",
                "file",
                "storage_limit_exceeded",
            )
        stored = StoredFile("file-" + uuid.uuid4().hex[:24], filename, purpose, int(time.time()), content)
        self._files[stored.id] = stored
        self.total_bytes += len(content)
        return stored

    def get(self, file_id: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None:
            raise not_found("file", file_id, "file_id")
        return stored

    def delete(self, file_id: str) -> None:
        stored = self.get(file_id)
        del self._files[file_id]
        self.total_bytes -= len(stored.content)

    def page(self, purpose: str | None, limit: int, after: str | None, newest_first: bool) -> dict[str, Any]:
        """OpenAI's list page: ``data`` after the ``after`` id in the requested order."""
        files = [f for f in self._files.values() if purpose is None or f.purpose == purpose]
        return list_page([f.object() for f in (reversed(files) if newest_first else files)], limit, after)


def list_page(objects: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """A cursor page of ``objects`` (already ordered): the ``limit`` after id ``after``.

    An ``after`` that names no listed object gives an empty page (it may have been deleted).
    """
    start = 0
    if after is not None:
        ids = [o["id"] for o in objects]
        start = ids.index(after) + 1 if after in ids else len(objects)
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(objects),
    }


def page_limit(raw: str | None, default: int, most: int) -> int:
    """The ``limit`` query parameter, 1..``most``; anything else is a 400."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise invalid(f"limit must be an integer between 1 and {most}", "limit")
    return value
