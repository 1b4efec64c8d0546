"""Fallback to the Hugging Face hub ids the paper used, when the network allows it.

Never hangs offline: a short TCP probe of the hub endpoint runs before any download, and
``HF_HUB_OFFLINE=1`` short-circuits it.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from scotd.tasks.official import TaskSpec, normalise_hub_row
from scotd.tasks.schema import LoadResult, RowError
from scotd.tasks.validate import DUPLICATE_ID, RowRejected

HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
PROBE_TIMEOUT_S = 3.0


class HubUnavailable(RuntimeError):
    """The hub cannot be reached (offline, blocked, or HF_HUB_OFFLINE set)."""


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def check_hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``HubUnavailable`` within ``timeout_s`` unless a TCP connection to the hub succeeds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as e:
        raise HubUnavailable(
            f"cannot reach {url.scheme}://{host}:{port} ({e.__class__.__name__}: {e})"
        ) from e


def load_from_hub(spec: TaskSpec, split: str, limit: int | None) -> LoadResult:
    """Download the hub's parquet conversion of ``spec.hub_id`` and validate every row."""
    check_hub_reachable()
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi, hf_hub_download

    revision = "refs/convert/parquet"
    prefix = f"{spec.hub_config}/{HUB_SPLITS[split]}/"
    files = sorted(
        f
        for f in HfApi().list_repo_files(spec.hub_id, repo_type="dataset", revision=revision)
        if f.startswith(prefix) and f.endswith(".parquet")
    )
    if not files:
        raise HubUnavailable(f"{spec.hub_id} has no split {split!r} (looked for {prefix}*.parquet)")
    result = LoadResult()
    seen: set[str] = set()
    index = 0
    for name in files:
        local = hf_hub_download(spec.hub_id, name, repo_type="dataset", revision=revision)
        rows: list[dict[str, Any]] = pq.read_table(local).to_pylist()
        for row in rows:
            index += 1
            if limit is not None and len(result.examples) >= limit:
                return result
            source = f"hf://{spec.hub_id}/{name}"
            try:
                example = normalise_hub_row(row, spec, split, index)
            except RowRejected as e:
                result.rejected.append(RowError(source, index, e.reason, e.detail))
                continue
            if example.id in seen:
                result.rejected.append(RowError(source, index, DUPLICATE_ID, example.id))
                continue
            seen.add(example.id)
            result.examples.append(example)
    return result
