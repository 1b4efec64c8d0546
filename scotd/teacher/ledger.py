"""The durable ledger of paid teacher responses: the source of truth of the sampling stage.

One JSON file per request key (``<root>/responses/<key[:2]>/<key>.json``), written atomically
and flushed to disk (or PUT to object storage) *before* anything parses the answer: the record
holds the raw response text. Resuming = listing the keys present and requesting only the rest.
Beside it:

- ``failures/``: the last failure of a request that never got an answer (retried on resume);
- ``unusable/<key[:2]>/<key>.<i>.json``: 2xx answers that hold no answer (not JSON, an HTML
  page, an error object), set aside so the request can be bought again, a bounded number of times;
- ``quarantine/<key[:2]>/<key>.<time>.json``: records that could not be read back (empty, torn,
  not JSON), moved aside by ``get`` so the request is bought again; listed in ``quarantined``.

A read that fails for any other reason than "no such file" is retried and then raised
(``storage.StorageReadError``): a paid record is never taken for missing because a disk or an
object store hiccuped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from scotd import storage

log = logging.getLogger(__name__)

RESPONSES, FAILURES, UNUSABLE, QUARANTINE = "responses", "failures", "unusable", "quarantine"
BATCHES = "batches"  # the batch route's records, ``<ledger>/batches/<id>.json`` (scotd.sample.batches)


def request_key(identity: dict[str, Any]) -> str:
    """Content hash of everything that determines a response (model, prompt, prompt-set version,
    sampling parameters, chunk). Canonical JSON, sorted keys."""
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_record(value: Any) -> bool:
    """A response record holds the raw text (``raw_body``) or, from older runs, the parsed ``response``."""
    return isinstance(value, dict) and (
        isinstance(value.get("raw_body"), str) or isinstance(value.get("response"), dict)
    )


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


class Ledger:
    def __init__(self, root: str) -> None:
        self.root = storage.location(root)
        # Records ``get`` moved aside in this process: {"key", "file", "moved_to", "reason"}.
        self.quarantined: list[dict[str, str]] = []

    @staticmethod
    def _rel(key: str, kind: str = RESPONSES) -> str:
        return f"{kind}/{key[:2]}/{key}.json"

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Make a paid response durable. Idempotent: the same key may be written again."""
        storage.write_bytes(self.root, self._rel(key), _encode(record))
        storage.delete(self.root, self._rel(key, FAILURES))

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``; ``None`` when absent or unreadable (then quarantined).

        Raises ``storage.StorageReadError`` when the file exists but cannot be read after retries.
        """
        rel = self._rel(key)
        data = storage.read_bytes(self.root, rel)
        if data is None:
            return None
        reason = ""
        try:
            record = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            reason = "not UTF-8"
        except (ValueError, RecursionError) as e:
            reason = "empty file" if not data.strip() else f"not JSON ({e})"
        else:
            if _is_record(record):
                return dict(record)
            reason = "not a response record"
        self._quarantine(key, rel, reason)
        return None

    def _quarantine(self, key: str, rel: str, reason: str) -> None:
        moved_to = f"{QUARANTINE}/{key[:2]}/{key}.{time.time_ns()}.json"
        storage.move(self.root, rel, moved_to)
        entry = {"key": key, "file": f"{self.root.uri}/{rel}", "moved_to": f"{self.root.uri}/{moved_to}"}
        self.quarantined.append({**entry, "reason": reason})
        log.warning(
            "ledger record %s is unreadable (%s): moved to %s", entry["file"], reason, entry["moved_to"]
        )

    def has(self, key: str) -> bool:
        return storage.exists(self.root, self._rel(key))

    def keys(self) -> set[str]:
        return {
            p.rsplit("/", 1)[-1].removesuffix(".json")
            for p in storage.list_files(self.root, RESPONSES, ".json")
        }

    def put_failure(self, key: str, record: dict[str, Any]) -> None:
        """Record the last failure of a request that never got a paid answer (retried on resume)."""
        storage.write_bytes(self.root, self._rel(key, FAILURES), _encode(record))

    def get_failure(self, key: str) -> dict[str, Any] | None:
        rel = self._rel(key, FAILURES)
        data = storage.read_bytes(self.root, rel)
        if data is None:
            return None
        try:
            record = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            record = None
        if isinstance(record, dict):
            return record
        self._quarantine(key, rel, "unreadable failure record")
        return None

    def set_aside_unusable(self, key: str, record: dict[str, Any], reason: str) -> int:
        """Move a stored 2xx that holds no answer to ``unusable/`` (copy first, then delete the
        response record, so a crash in between loses nothing); return how many ``key`` now has."""
        count = self.unusable_count(key) + 1
        rel = f"{UNUSABLE}/{key[:2]}/{key}.{count}.json"
        storage.write_bytes(self.root, rel, _encode({**record, "unusable": reason}))
        storage.delete(self.root, self._rel(key))
        return count

    def unusable_count(self, key: str) -> int:
        return sum(
            1
            for p in storage.list_files(self.root, f"{UNUSABLE}/{key[:2]}", ".json")
            if p.rsplit("/", 1)[-1].startswith(key + ".")
        )

    def unusable(self) -> dict[str, list[str]]:
        """Every set-aside answer's reason, by key."""
        out: dict[str, list[str]] = {}
        for rel in storage.list_files(self.root, UNUSABLE, ".json"):
            key = rel.rsplit("/", 1)[-1].split(".", 1)[0]
            data = storage.read_bytes(self.root, rel)
            try:
                reason = str(json.loads(data or b"{}").get("unusable", "unusable"))
            except (ValueError, AttributeError, RecursionError):
                reason = "unusable"
            out.setdefault(key, []).append(reason)
        return out
