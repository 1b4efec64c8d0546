"""A clone with nothing beside it: the unit tier passes on the repository's own files alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _clone_files(dest: Path) -> None:
    """Copy what a clone of this tree holds: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO_ROOT / rel
        if src.is_file():  # a file deleted in the working tree but still tracked is not copied
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_unit_tier_passes_in_a_clone_without_shared_data(tmp_path: Path) -> None:
    clone = tmp_path / "scotd"  # tmp_path/shared does not exist: no ../shared/data beside it
    _clone_files(clone)
    env = {k: v for k, v in os.environ.items() if k not in ("SCOTD_DATA_DIR", "RAY_ADDRESS")}
    env |= {"PYTHONPATH": str(clone), "XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import scotd; print(scotd.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip() == str(clone / "scotd" / "__init__.py")  # the clone's code, not ours
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/unit"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "error" not in summary and "failed" not in summary, summary
    # The tests that need whole datasets skip, and say how to get them.
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) >= 3 and all("scotd data fetch" in line for line in skips), skips
