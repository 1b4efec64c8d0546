"""The durable ledger of paid teacher responses: the source of truth of the sampling stage.

One JSON file per request key (``<root>/<key[:2]>/<key>.json``), written atomically and flushed
to disk (or PUT to object storage) *before* anything parses it. Resuming = listing the keys
present and requesting only the rest. Failed attempts are kept apart under ``failures/`` so a
resume retries them, and they never masquerade as paid answers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from scotd import storage


def request_key(identity: dict[str, Any]) -> str:
    """Content hash of everything that determines a response (model, prompt, prompt-set version,
    sampling parameters, chunk). Canonical JSON, sorted keys."""
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Ledger:
    def __init__(self, root: str) -> None:
        self.root = storage.location(root)

    @staticmethod
    def _rel(key: str, kind: str = "responses") -> str:
        return f"{kind}/{key[:2]}/{key}.json"

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Make a paid response durable. Idempotent: the same key may be written again."""
        data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")
        storage.write_bytes(self.root, self._rel(key), data)
        storage.delete(self.root, self._rel(key, "failures"))

    def get(self, key: str) -> dict[str, Any] | None:
        data = storage.read_bytes(self.root, self._rel(key))
        return None if data is None else json.loads(data)

    def has(self, key: str) -> bool:
        return storage.exists(self.root, self._rel(key))

    def keys(self) -> set[str]:
        return {
            p.rsplit("/", 1)[-1].removesuffix(".json")
            for p in storage.list_files(self.root, "responses", ".json")
        }

    def put_failure(self, key: str, record: dict[str, Any]) -> None:
        """Record the last failure of a request that never got a paid answer (retried on resume)."""
        data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")
        storage.write_bytes(self.root, self._rel(key, "failures"), data)

    def get_failure(self, key: str) -> dict[str, Any] | None:
        data = storage.read_bytes(self.root, self._rel(key, "failures"))
        return None if data is None else json.loads(data)
