"""Where things live on disk: the repo, the shared data directory, outputs."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "SCOTD_DATA_DIR"


def default_data_dir() -> Path | None:
    """``../shared/data`` next to the repo checkout, when it exists."""
    candidate = REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Data directory by precedence: explicit option > ``$SCOTD_DATA_DIR`` > the shared default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir()
