"""Output locations that are local paths or object-storage URIs (``s3://``, ``gs://``), via pyarrow.

Cluster nodes share no disk, so every stage writes through these helpers. Local writes are
durable and atomic (write a temp file, fsync, rename); object stores make a PUT atomic already.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# A read that fails for another reason than "no such file" is tried this many times, backing off.
READ_ATTEMPTS = 4
READ_BACKOFF_S = 0.25


T = TypeVar("T")


class StorageError(OSError):
    """A read, write or listing failed for another reason than "no such file", even after retries."""


class StorageReadError(StorageError):
    """A file exists (or may exist) but could not be read, even after retries."""


@dataclass(frozen=True)
class Location:
    """A directory on some filesystem."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def child(self, *parts: str) -> Location:
        sep = "" if self.uri.endswith("/") else "/"
        return Location(self.fs, self.join(*parts), self.uri + sep + "/".join(parts))


def location(uri_or_path: str) -> Location:
    """``s3://bucket/x`` / ``gs://...`` / ``file:///x`` / a plain (relative) path."""
    if "://" in uri_or_path:
        fs, path = pafs.FileSystem.from_uri(uri_or_path)
        return Location(fs, path.rstrip("/"), uri_or_path.rstrip("/"))
    path = os.path.abspath(os.path.expanduser(uri_or_path))
    return Location(pafs.LocalFileSystem(), path, path)


def _replace_atomically(target: str, write: Callable[[IO[bytes]], object]) -> None:
    """Local: ``write`` a temp file beside ``target``, fsync, rename over ``target``, fsync the dir."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(os.path.dirname(target), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _retried(what: str, attempts: int, op: Callable[[], T], error: type[StorageError] = StorageError) -> T:
    """``op()``, tried ``attempts`` times with backoff on ``OSError`` (not on FileNotFoundError)."""
    for attempt in range(1, attempts + 1):
        try:
            return op()
        except FileNotFoundError:
            raise
        except OSError as e:
            if attempt == attempts:
                raise error(f"{what} failed ({attempts} attempts): {type(e).__name__}: {e}") from e
            time.sleep(READ_BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def write_bytes(loc: Location, relpath: str, data: bytes, attempts: int = READ_ATTEMPTS) -> None:
    """Durably and atomically write ``data`` to ``loc/relpath`` (readers never see a partial file).

    A failed write is retried with backoff (an object store's passing 503), then raised as
    ``StorageError``.
    """
    target = loc.join(relpath)

    def write() -> None:
        if loc.is_local:
            _replace_atomically(target, lambda f: f.write(data))
            return
        loc.fs.create_dir(posixpath.dirname(target), recursive=True)
        with loc.fs.open_output_stream(target) as out:  # one PUT (or multipart upload): atomic
            out.write(data)

    _retried(f"writing {loc.uri}/{relpath}", attempts, write)


def write_parquet(loc: Location, relpath: str, table: pa.Table, attempts: int = READ_ATTEMPTS) -> None:
    """``write_bytes`` for a parquet table, streamed (never held twice in memory)."""
    target = loc.join(relpath)

    def write() -> None:
        if loc.is_local:
            _replace_atomically(target, lambda f: pq.write_table(table, f))
            return
        loc.fs.create_dir(posixpath.dirname(target), recursive=True)
        pq.write_table(table, target, filesystem=loc.fs)  # an object appears only when its upload completes

    _retried(f"writing {loc.uri}/{relpath}", attempts, write)


def read_bytes(loc: Location, relpath: str, attempts: int = READ_ATTEMPTS) -> bytes | None:
    """The bytes of ``loc/relpath``; ``None`` only when it does not exist.

    Any other error (a passing object-store or network failure, a permission problem) is retried
    with backoff, then raised as ``StorageReadError``: "could not read" never passes for "absent".
    """
    path = loc.join(relpath)

    def read() -> bytes | None:
        try:
            with loc.fs.open_input_stream(path) as f:
                data: bytes = f.read()
                return data
        except FileNotFoundError:
            return None
        except OSError:
            with contextlib.suppress(OSError):  # some stores report a missing key as a plain OSError
                if loc.fs.get_file_info(path).type == pafs.FileType.NotFound:
                    return None
            raise

    return _retried(f"reading {loc.uri}/{relpath}", attempts, read, StorageReadError)


def exists(loc: Location, relpath: str) -> bool:
    """Whether ``loc/relpath`` is a file; a failing lookup is retried, then raised, never ``False``."""
    info = _retried(
        f"looking up {loc.uri}/{relpath}", READ_ATTEMPTS, lambda: loc.fs.get_file_info(loc.join(relpath))
    )
    return info.type == pafs.FileType.File


@dataclass(frozen=True)
class FileStat:
    """One entry of a listing: its path relative to the listed location, size and age."""

    path: str
    is_dir: bool
    size: int
    mtime: float | None  # seconds since the epoch; None where the store does not say


def _stat(info: pafs.FileInfo, path: str) -> FileStat:
    ns = info.mtime_ns
    return FileStat(
        path=path,
        is_dir=info.type == pafs.FileType.Directory,
        size=int(info.size or 0),
        mtime=ns / 1e9 if ns is not None else None,
    )


def stat_files(loc: Location, relpath: str = "", suffix: str = "") -> list[FileStat]:
    """``list_files`` with each file's size and modification time, from the same single listing
    (how old a checkpoint is, how fast a ledger grows: ``scotd status``)."""
    base = loc.join(relpath) if relpath else loc.path

    def infos_of() -> list[pafs.FileInfo]:
        if loc.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        found: list[pafs.FileInfo] = loc.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        return found

    infos = _retried(f"listing {loc.uri}/{relpath}", READ_ATTEMPTS, infos_of)
    prefix = loc.path.rstrip("/") + "/"
    return sorted(
        (
            _stat(i, i.path.removeprefix(prefix))
            for i in infos
            if i.type == pafs.FileType.File and i.path.endswith(suffix) and ".tmp-" not in i.path
        ),
        key=lambda f: f.path,
    )


def list_files(loc: Location, relpath: str = "", suffix: str = "") -> list[str]:
    """Paths (relative to ``loc``) of files under ``relpath`` ending in ``suffix``; [] if absent.

    A failing listing is retried, then raised (``StorageError``): never an empty list.
    """
    return [f.path for f in stat_files(loc, relpath, suffix)]


def list_dir(loc: Location, relpath: str = "") -> list[FileStat]:
    """The entries directly under ``loc/relpath`` (files and directories), by name; [] if absent.

    A failing listing is retried, then raised (``StorageError``).
    """
    base = loc.join(relpath) if relpath else loc.path

    def infos_of() -> list[pafs.FileInfo]:
        if loc.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        found: list[pafs.FileInfo] = loc.fs.get_file_info(pafs.FileSelector(base, recursive=False))
        return found

    infos = _retried(f"listing {loc.uri}/{relpath}", READ_ATTEMPTS, infos_of)
    prefix = loc.path.rstrip("/") + "/"
    found = (_stat(i, i.path.removeprefix(prefix)) for i in infos if ".tmp-" not in i.path)
    return sorted(found, key=lambda f: f.path)


def stat(loc: Location, relpath: str = "") -> FileStat | None:
    """``loc/relpath`` as a file or a directory, or ``None`` when there is nothing there.

    On object storage a "directory" is a prefix that some object starts with. A failing lookup is
    retried, then raised (``StorageError``), never taken for "absent".
    """
    path = loc.join(relpath) if relpath else loc.path
    info = _retried(f"looking up {loc.uri}/{relpath}", READ_ATTEMPTS, lambda: loc.fs.get_file_info(path))
    if info.type == pafs.FileType.NotFound:
        return None
    return _stat(info, relpath)


def move(loc: Location, src: str, dst: str) -> None:
    """Move ``loc/src`` to ``loc/dst`` (a rename locally; copy-then-delete on object stores)."""
    target = loc.join(dst)
    if loc.is_local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    else:
        loc.fs.create_dir(posixpath.dirname(target), recursive=True)
    loc.fs.move(loc.join(src), target)


def delete(loc: Location, relpath: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        loc.fs.delete_file(loc.join(relpath))


def upload_dir(local_path: str, dest: Location) -> None:
    """Copy the local directory ``local_path`` (recursively) into ``dest`` (a path or object store)."""
    dest.fs.create_dir(dest.path, recursive=True)
    pafs.copy_files(
        local_path, dest.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=dest.fs
    )


def local_dir(uri_or_path: str, cache_dir: str | None = None) -> str:
    """A local directory with the files of ``uri_or_path`` (e.g. a model export on ``s3://``).

    Anything that is not a URI (a path, a hub id) is returned unchanged, a ``file://`` URI as its
    path. A remote URI is copied once per node into ``cache_dir``
    (default ``$SCOTD_CACHE_DIR``, else ``~/.cache/scotd``), under a name that changes when any
    file's size or modification time does, so an overwritten export is fetched again. Concurrent
    callers on one node (several replicas) each copy to a temporary directory; the first rename wins.
    """
    if "://" not in uri_or_path:
        return uri_or_path
    loc = location(uri_or_path)
    if loc.is_local:
        return loc.path
    listing = sorted(
        (i.path, i.size, i.mtime_ns)
        for i in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
        if i.type == pafs.FileType.File
    )
    if not listing:
        raise FileNotFoundError(f"{loc.uri} holds no files")
    key = hashlib.sha256(repr((loc.uri, listing)).encode()).hexdigest()[:16]
    root = cache_dir or os.environ.get("SCOTD_CACHE_DIR") or os.path.expanduser("~/.cache/scotd")
    dest = os.path.join(root, f"{posixpath.basename(loc.path) or 'dir'}-{key}")
    if os.path.isdir(dest):
        return dest
    os.makedirs(root, exist_ok=True)
    tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
    # copy_files creates only the subdirectories it lists, not the destination itself.
    os.makedirs(tmp)
    pafs.copy_files(loc.path, tmp, source_filesystem=loc.fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        os.rename(tmp, dest)
    except OSError:  # another caller finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
