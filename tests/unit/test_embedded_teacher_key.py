"""The embedded teacher gets no provider key: not in its environment, not in the sampler's requests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scotd.config import load_config
from scotd.pipeline.run import PipelineConfig, teacher_endpoint

KEY = "sk-test-provider-key-0123456789"


def test_the_sampler_sends_no_key_to_the_embedded_teacher(tmp_path: Path) -> None:
    out = str(tmp_path / "teacher")
    embedded = load_config(PipelineConfig).sample_config("http://127.0.0.1:1/v1", out)
    assert embedded.teacher.api_key_env == ""  # '' = send none
    real = load_config(PipelineConfig, overrides={"teacher_base_url": "http://127.0.0.1:2/v1"})
    assert real.sample_config(real.teacher_base_url or "", out).teacher.api_key_env == "OPENAI_API_KEY"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/PID/environ")
def test_the_embedded_teacher_process_does_not_inherit_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("MY_TEACHER_KEY", KEY)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = load_config(PipelineConfig, overrides={"api_key_env": "MY_TEACHER_KEY"})
    with teacher_endpoint(cfg) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        environs = [Path(f"/proc/{pid}/environ").read_bytes() for pid in _children(os.getpid())]
    assert environs, "the embedded teacher-sim process was not found"
    assert all(KEY.encode() not in env for env in environs)


def _children(parent: int) -> list[int]:
    """PIDs whose parent is ``parent`` (from /proc/PID/stat: field 4 after the ``(comm)``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids
