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
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    """A directory on some filesystem."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

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


def write_bytes(loc: Location, relpath: str, data: bytes) -> None:
    """Durably and atomically write ``data`` to ``loc/relpath`` (readers never see a partial file)."""
    target = loc.join(relpath)
    if loc.is_local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(os.path.dirname(target), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return
    loc.fs.create_dir(posixpath.dirname(target), recursive=True)
    with loc.fs.open_output_stream(target) as out:
        out.write(data)


def read_bytes(loc: Location, relpath: str) -> bytes | None:
    try:
        with loc.fs.open_input_stream(loc.join(relpath)) as f:
            data: bytes = f.read()
            return data
    except (FileNotFoundError, OSError):
        return None


def exists(loc: Location, relpath: str) -> bool:
    return loc.fs.get_file_info(loc.join(relpath)).type == pafs.FileType.File


def list_files(loc: Location, relpath: str = "", suffix: str = "") -> list[str]:
    """Paths (relative to ``loc``) of files under ``relpath`` ending in ``suffix``; [] if absent."""
    base = loc.join(relpath) if relpath else loc.path
    if loc.fs.get_file_info(base).type != pafs.FileType.Directory:
        return []
    infos = loc.fs.get_file_info(pafs.FileSelector(base, recursive=True))
    prefix = loc.path.rstrip("/") + "/"
    return sorted(
        i.path.removeprefix(prefix)
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(suffix) and ".tmp-" not in i.path
    )


def delete(loc: Location, relpath: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        loc.fs.delete_file(loc.join(relpath))


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
