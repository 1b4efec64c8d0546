"""One run per output directory: ``with output_lock(uri, "scotd sample"):``.

Every stage that writes a directory takes it: sample, corpus, distill (its run directory), eval
and the pipeline (its whole output; its stages then lock their own subdirectories).

A second run on a directory that is in use refuses at once (``OutputLocked``) and names the
holder (host, pid, command, start time). It does not wait: two runs on one ledger would buy the
same requests concurrently, and waiting silently behind a long run is rarely what was meant.

- Local paths: an exclusive ``flock`` on ``<dir>/.scotd.lock``. The kernel drops it when the
  holder exits, however it exits (``kill -9`` included), so a crashed run never leaves a stale lock.
- Object storage has no locks: a lease object ``<dir>/.scotd.lock`` naming the holder and an
  expiry, renewed every ``LEASE_S / 3`` by a daemon thread and deleted on exit. A lease that has
  expired (its holder died) is taken over, and so at once is one whose holder ran on this host and
  whose process is gone (a killed job driver, resubmitted on the same head). Without a conditional PUT this is best effort: two runs
  started within the same second can both get it.

``who_holds(loc)`` answers the same question for a watcher (``scotd status``) without taking the
directory: who holds it now, or which run held it last and died without releasing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scotd import storage

LOCK_FILE = ".scotd.lock"
LEASE_S = 120.0


class OutputLocked(RuntimeError):
    """Another run holds the output directory."""


def _holder(command: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": time.time()}


def _describe(holder: dict[str, Any] | None, uri: str) -> str:
    if not holder:
        who = "another run"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
        who = f"{holder.get('command', 'a run')} (pid {holder.get('pid')} on {holder.get('host')}, since {since})"
    return (
        f"{uri} is in use by {who}; wait for it to finish or stop it, or write to another "
        "directory. Two runs on one directory would overwrite each other's files (and two teacher "
        "runs would buy the same requests twice)."
    )


@contextlib.contextmanager
def output_lock(uri: str, command: str) -> Iterator[None]:
    """Hold ``uri`` for the duration of the block; raise ``OutputLocked`` at once if it is taken."""
    loc = storage.location(uri)
    if loc.is_local:
        with _flock(loc, command):
            yield
    else:
        with _lease(loc, command):
            yield


@contextlib.contextmanager
def _flock(loc: storage.Location, command: str) -> Iterator[None]:
    import fcntl

    os.makedirs(loc.path, exist_ok=True)
    fd = os.open(loc.join(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(_describe(_read_json(os.pread(fd, 65536, 0)), loc.uri)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder(command)).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lease(loc: storage.Location, command: str) -> Iterator[None]:
    current = _read_json(storage.read_bytes(loc, LOCK_FILE) or b"")
    if current and float(current.get("expires_at", 0)) > time.time() and not _died_here(current):
        raise OutputLocked(_describe(current, loc.uri))
    holder = _holder(command)
    stop = threading.Event()

    def renew() -> None:
        storage.write_bytes(
            loc, LOCK_FILE, json.dumps({**holder, "expires_at": time.time() + LEASE_S}).encode()
        )

    def keep_renewing() -> None:
        while not stop.wait(LEASE_S / 3):
            with contextlib.suppress(OSError):  # a missed renewal is retried; the lease outlives two
                renew()

    renew()
    thread = threading.Thread(target=keep_renewing, daemon=True, name="scotd-output-lease")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        storage.delete(loc, LOCK_FILE)


def _died_here(holder: dict[str, Any]) -> bool:
    """The lease's holder ran on this host and its process is gone (a crashed or killed driver that a
    resubmitted job replaces on the same head): take the lease over now, not when it expires."""
    if holder.get("host") != socket.gethostname():
        return False  # another machine's process: only the expiry can tell
    try:
        pid, since = int(holder["pid"]), float(holder["since"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        import psutil
    except ImportError:  # no start times to compare: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    try:
        # A live pid started after the holder did is a reused pid: the holder is gone.
        return bool(psutil.Process(pid).create_time() > since + 1)
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):
        return False


@dataclass(frozen=True)
class Holder:
    """Who holds a directory (``live``), or last held it and is gone (a killed run's lock file)."""

    live: bool
    command: str | None = None
    pid: int | None = None
    host: str | None = None
    since: float | None = None
    expires_at: float | None = None  # object storage: the lease's expiry


def who_holds(loc: storage.Location) -> Holder | None:
    """The holder of ``loc`` as a watcher sees it (``scotd status``); ``None`` when no run ever
    named itself there, or the last one released it cleanly (it empties the file).

    It never creates a lock file and never waits. Locally the flock is tried (shared, non-blocking)
    only when the file names a holder, and released at once: an answer for a directory in use
    without ever getting in a starting run's way, except in the instant after a killed run. On
    object storage the lease counts while it has not expired and its holder is not known dead.
    """
    if not loc.is_local:
        lease = _read_json(storage.read_bytes(loc, LOCK_FILE) or b"")
        if lease is None:
            return None
        live = float(lease.get("expires_at") or 0) > time.time() and not _died_here(lease)
        return _as_holder(lease, live)
    import fcntl

    try:
        fd = os.open(loc.join(LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        data = os.pread(fd, 65536, 0)
        if not data.strip():  # released cleanly (or a holder this instant, before it wrote its name)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _as_holder(_read_json(data) or {}, live=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return _as_holder(_read_json(data) or {}, live=False)  # its holder died without releasing it
    finally:
        os.close(fd)


def _as_holder(data: dict[str, Any], live: bool) -> Holder:
    def number(key: str) -> float | None:
        try:
            return float(data[key])
        except (KeyError, TypeError, ValueError):
            return None

    pid = number("pid")
    return Holder(
        live=live,
        command=str(data["command"]) if data.get("command") is not None else None,
        pid=int(pid) if pid is not None else None,
        host=str(data["host"]) if data.get("host") is not None else None,
        since=number("since"),
        expires_at=number("expires_at"),
    )


def _read_json(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
