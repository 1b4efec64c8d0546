"""Output locations that are local paths or object-storage URIs (``s3://``, ``gs://``), via pyarrow.

Cluster nodes share no disk, so every stage writes through these helpers. Local writes are
durable and atomic (write a temp file, fsync, rename); object stores make a PUT atomic already.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
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
