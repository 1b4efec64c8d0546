"""What ``scotd status`` reports (``RunStatus``) and the reads it is made of (``Reader``).

A status is read while runs write: any file may be missing, torn or half-listed. ``Reader`` never
raises; what it could not read becomes a note and a ``?`` in the report, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from scotd import storage
from scotd.artifacts import CONFIG_FILE
from scotd.outlock import Holder

KINDS = ("sample", "corpus", "distill", "eval", "pipeline", "experiment", "empty", "unknown", "missing")
STATES = ("running", "finished", "failed", "incomplete", "empty", "missing")

# The first line of every resolved config.yaml (scotd.config.write_resolved) names its stage.
_CONFIG_KINDS = {
    "SampleConfig": "sample",
    "CorpusConfig": "corpus",
    "DistillConfig": "distill",
    "EvalConfig": "eval",
    "PipelineConfig": "pipeline",
}
_HEADER = re.compile(rb"#\s*(\w+), resolved")


@dataclass(frozen=True)
class RunStatus:
    """One directory's standing. ``None`` / ``"?"`` = not known (not written yet, or unreadable)."""

    path: str
    kind: str  # one of KINDS
    state: str  # one of STATES
    holder: Holder | None = None  # the run holding it now (live), or the last one, gone (killed)
    progress: str = "?"  # one human line
    done: float | None = None  # requests answered / steps trained / questions scored / rows kept
    total: float | None = None
    unit: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # kind-specific numbers (loss, accuracy, ...)
    spend_usd: float | None = None
    budget_usd: float | None = None
    eta_s: float | None = None
    eta_of: str = ""  # what the ETA is of, when not the whole directory (a pipeline's current stage)
    last_error: str | None = None
    stages: list[StageStatus] = field(default_factory=list)  # pipeline / experiment
    results: list[str] = field(default_factory=list)  # a finished pipeline's headline rows
    notes: list[str] = field(default_factory=list)  # what could not be read, and hints


@dataclass(frozen=True)
class StageStatus:
    """A pipeline's teacher, or one student through its corpus, training and evaluation."""

    role: str  # teacher | student
    name: str  # the teacher directory, or the student's key
    label: str
    state: str
    text: str  # one human line
    parts: dict[str, RunStatus] = field(default_factory=dict)  # sample | corpus, distill, eval


class Reader:
    """Reads under one directory that never raise: absent is ``None``, unreadable is ``None`` plus a
    note (shared with the readers of its subdirectories, so a pipeline lists them all)."""

    def __init__(self, loc: storage.Location, notes: list[str] | None = None, prefix: str = "") -> None:
        self.loc = loc
        self.notes: list[str] = [] if notes is None else notes
        self.prefix = prefix

    def child(self, relpath: str) -> Reader:
        return Reader(self.loc.child(*relpath.split("/")), self.notes, f"{self.prefix}{relpath}/")

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def _failed(self, what: str, e: Exception) -> None:
        self.note(f"{self.prefix}{what}: could not read ({type(e).__name__}: {e})")

    def raw(self, relpath: str) -> bytes | None:
        try:
            return storage.read_bytes(self.loc, relpath)
        except Exception as e:  # a status never crashes on one file
            self._failed(relpath, e)
            return None

    def json(self, relpath: str) -> dict[str, Any] | None:
        """A JSON object; ``None`` when absent, or torn / being written (then noted)."""
        data = self.raw(relpath)
        if data is None:
            return None
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        self.note(f"{self.prefix}{relpath}: unreadable (torn, or being written): shown as ?")
        return None

    def jsonl(self, relpath: str) -> list[dict[str, Any]]:
        """The readable rows of a JSON-lines file (a torn line is skipped and noted)."""
        data = self.raw(relpath)
        rows: list[dict[str, Any]] = []
        bad = 0
        for line in (data or b"").decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
        if bad:
            self.note(f"{self.prefix}{relpath}: {bad} unreadable line(s) skipped")
        return rows

    def config(self) -> tuple[str | None, dict[str, Any] | None]:
        """The stage that wrote ``config.yaml`` (``sample``, ``pipeline``, ...) and its values."""
        data = self.raw(CONFIG_FILE)
        if data is None:
            return None, None
        match = _HEADER.match(data)
        kind = _CONFIG_KINDS.get(match.group(1).decode()) if match else None
        try:
            values = yaml.safe_load(data)
        except yaml.YAMLError:
            values = None
        if not isinstance(values, dict):
            self.note(f"{self.prefix}{CONFIG_FILE}: unreadable (torn, or being written)")
            return kind, None
        return kind, values

    def files(self, relpath: str = "", suffix: str = "") -> list[storage.FileStat]:
        try:
            return storage.stat_files(self.loc, relpath, suffix)
        except Exception as e:
            self._failed(relpath or ".", e)
            return []

    def entries(self, relpath: str = "") -> list[storage.FileStat]:
        try:
            return storage.list_dir(self.loc, relpath)
        except Exception as e:
            self._failed(relpath or ".", e)
            return []

    def dirs(self, relpath: str = "") -> list[str]:
        """Names of the subdirectories directly under ``relpath``."""
        return [e.path.rsplit("/", 1)[-1] for e in self.entries(relpath) if e.is_dir]

    def stat(self, relpath: str = "") -> storage.FileStat | None:
        try:
            return storage.stat(self.loc, relpath)
        except Exception as e:
            self._failed(relpath or ".", e)
            return None

    def exists(self, relpath: str) -> bool:
        return self.stat(relpath) is not None


def get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or ``None`` where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def number(value: Any) -> float | None:
    """A JSON number as a float (``None`` for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def duration(seconds: float | None) -> str:
    """``42 s``, ``5m 03s``, ``2h 07m``, ``3d 04h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def share(done: float | None, total: float | None) -> str:
    """`` (40%)`` when both are known, else nothing."""
    return f" ({done / total:.0%})" if done is not None and total else ""


def count(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def percent(value: Any) -> str:
    """An accuracy in [0, 1] as ``71.3%``; ``?`` when it is not a number."""
    v = number(value)
    return "?" if v is None else f"{100 * v:.1f}%"
