"""jobs/*.py run as scripts from a bare checkout (what `ray job submit --working-dir .` ships).

Each job imports scotd from the checkout it lives in, so it needs no `pip install` of scotd on
the cluster, and forwards to its `scotd` stage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Each job is named after its stage; the two old names still run (deprecated aliases).
STAGES = ("sample", "corpus", "distill", "eval", "pipeline", "experiment")
JOBS = {**{s: s for s in STAGES}, "sample_teacher": "sample", "evaluate": "eval"}


def test_every_job_file_is_covered() -> None:
    assert {p.stem for p in (REPO / "jobs").glob("*.py")} - {"__init__"} == set(JOBS)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repo whose scotd announces itself, so the test sees which scotd was imported."""
    root = tmp_path_factory.mktemp("checkout")
    for part in ("scotd", "jobs"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    init = root / "scotd" / "__init__.py"
    init.write_text(
        init.read_text() + "\nimport sys as _s\n\nprint('scotd from the checkout', file=_s.stderr)\n"
    )
    return root


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_runs_from_a_checkout_without_install(checkout: Path, tmp_path: Path, job: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, str(checkout / "jobs" / f"{job}.py"), "--help"],
        cwd=tmp_path,  # not the checkout: `python -m`-style cwd imports cannot help
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "scotd from the checkout" in out.stderr, "the job imported an installed scotd, not its checkout's"
    assert out.stdout.startswith(f"usage: scotd {JOBS[job]} "), out.stdout[:200]
