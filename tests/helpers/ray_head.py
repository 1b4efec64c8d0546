"""A local Ray head for tests (``scotd.localcluster.head``: ``ray start --head --block`` on 127.0.0.1
in its own process group, stopped by killing exactly that group)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from scotd.localcluster.head import (
    RAY_BIN,
    HeadProcess,
    HeadStartError,
    free_port,
    head_env,
    start_head,
    stop_head,
)

LocalHead = HeadProcess

__all__ = ["RAY_BIN", "HeadStartError", "LocalHead", "free_port", "head_env", "local_head"]


@contextlib.contextmanager
def local_head(num_cpus: int = 8, dashboard: bool = False, timeout_s: float = 120) -> Iterator[LocalHead]:
    """Start a head (with the dashboard / job API when ``dashboard``), yield it, then kill its group."""
    head = start_head(num_cpus, dashboard, timeout_s=timeout_s)
    try:
        yield head
    finally:
        stop_head(head.pid)
