"""Where things live on disk: the repo, the data directory, outputs (``task_slug``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "SCOTD_DATA_DIR"


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the repo checkout, when it exists."""
    candidate = REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def user_data_dir() -> Path:
    """The per-user data directory ``scotd data fetch`` fills by default (``$XDG_DATA_HOME/scotd/data``)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "scotd" / "data"


def default_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout, else the user data directory — whichever exists."""
    shared = shared_data_dir()
    if shared is not None:
        return shared
    user = user_data_dir()
    return user if user.is_dir() else None


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Data directory by precedence: explicit option > ``$SCOTD_DATA_DIR`` > the defaults above."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def fetch_target_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where ``scotd data fetch`` writes: explicit option > ``$SCOTD_DATA_DIR`` > the user directory."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else user_data_dir()


def task_slug(task: str) -> str:
    """A task name as one path component of an output directory (``jsonl:a/b.jsonl`` → ``jsonl-a_b.jsonl``)."""
    return task.replace("jsonl:", "jsonl-").replace("/", "_")


def model_display_name(model: str) -> str:
    """How reports and the served API name a model (path, URI or hub id): its last path component,
    or for a ``scotd distill`` export (``outputs/distill/<run>/export``) the run's directory."""
    parts = model.rstrip("/").rsplit("/", 2)
    return parts[-2] if len(parts) > 1 and parts[-1] == "export" and parts[-2] else parts[-1]
