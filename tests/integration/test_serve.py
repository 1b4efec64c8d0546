"""The voting student on Ray Serve over real HTTP on 127.0.0.1: answers, validation, load,
autoscaling and a crashed replica (auth and hostile input: test_serve_hostile.py)."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from scotd.httpjson import http_json
from scotd.serve.config import ServeConfig

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
QUESTION = {
    "question": "Tom has 3 apples. He eats 1. How many apples does Tom have now?",
    "choices": ["2", "3", "4"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def serve_port(ray_session: str) -> Iterator[int]:
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()


def _deploy(model: Path, name: str, options: dict[str, Any] | None = None, **cfg: Any) -> None:
    from ray import serve

    from scotd.serve.app import build_app

    config = ServeConfig.model_validate({"model": str(model), "engine": "hf", "threads": 1, **cfg})
    serve.run(
        build_app(config, {"ray_actor_options": {"num_cpus": 0.5}, **(options or {})}),
        name=name,
        route_prefix=f"/{name}",
    )


RUN = "run-x"  # plain serves the model as a `scotd distill` export: <run>/export


@pytest.fixture(scope="module")
def plain(always_a_model: Path, serve_port: int, tmp_path_factory: pytest.TempPathFactory) -> str:
    export = tmp_path_factory.mktemp("distill") / RUN / "export"
    export.parent.mkdir()
    export.symlink_to(always_a_model, target_is_directory=True)
    _deploy(export, "plain", max_votes=16)
    return f"http://127.0.0.1:{serve_port}/plain"


def test_answer_over_http_and_openai_client(plain: str, always_a_model: Path) -> None:
    r = http_json("POST", f"{plain}/v1/answer", {**QUESTION, "votes": 5, "rationales": True}, timeout=60)
    assert r.status == 200, r.text
    body = r.body
    assert (body["answer"], body["answer_text"], body["votes"], body["samples"]) == ("a", "2", {"a": 5}, 5)
    assert body["confidence"] == 1.0 and body["unparseable"] == 0 and body["latency_ms"] > 0
    assert body["model"] == RUN  # named as `scotd eval` names it: the run, not "export"
    assert len(body["rationales"]) == 5 and all(x["answer"] == "a" for x in body["rationales"])
    labelled = http_json(
        "POST", f"{plain}/v1/answer", {"question": "Pick", "choices": [{"label": "a", "text": "x"}, {"label": "b", "text": "y"}], "votes": 3},
        timeout=60,
    ).body  # fmt: skip
    assert labelled["answer"] == "a" and "rationales" not in labelled
    auto = http_json("POST", f"{plain}/v1/answer", {**QUESTION, "votes": "auto"}, timeout=60).body
    # The always-(a) model agrees with itself: settled after the first round of 4 (cap 16).
    assert (auto["answer"], auto["votes_spent"], auto["max_votes"], auto["samples"]) == ("a", 4, 16, 4)
    client = openai.OpenAI(base_url=f"{plain}/v1", api_key="unused", max_retries=0, timeout=60)
    completion = client.completions.create(
        model="m", prompt="Q: hi?\nAnswer Choices:\n(a) x\n(b) y\nA: ", n=4, max_tokens=16, temperature=0.3
    )  # sampled (not greedy), but cool enough that the tiny always-(a) model says (a) every time
    assert len(completion.choices) == 4 and all("(a)" in c.text for c in completion.choices)
    chat = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi?\nAnswer Choices:\n(a) x\n(b) y"}], n=2
    )
    assert len(chat.choices) == 2
    assert completion.model == chat.model == RUN
    assert [m.id for m in client.models.list().data] == [RUN]
    assert http_json("GET", f"{plain}/healthz", timeout=10).body == {"status": "ok"}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({**QUESTION, "question": "   "}, "question must not be empty"),
        ({**QUESTION, "choices": ["only"]}, "1 choices given; between 2 and 10"),
        ({**QUESTION, "choices": [str(i) for i in range(11)]}, "11 choices given"),
        ({**QUESTION, "choices": ["x", ""]}, "choice 1 is empty"),
        ({**QUESTION, "votes": 0}, "votes must be between 1 and 16, got 0"),
        ({**QUESTION, "votes": 17}, "votes must be between 1 and 16, got 17"),
        ({**QUESTION, "question": "x" * 2001}, "question is 2001 characters; the limit is 2000"),
        ({**QUESTION, "temperature": 5}, "temperature"),
        ({**QUESTION, "colour": "red"}, "colour"),
        ({"choices": ["x", "y"]}, "question: Field required"),
        (
            {**QUESTION, "choices": [{"label": "a", "text": "x"}, {"label": "a", "text": "y"}]},
            "labels must be unique",
        ),
    ],
)
def test_malformed_requests_get_422_with_a_message(plain: str, payload: dict[str, Any], needle: str) -> None:
    r = http_json("POST", f"{plain}/v1/answer", payload, timeout=30)
    assert r.status == 422, r.text
    message = r.body["error"]["message"]
    assert needle in message, message
    assert "Traceback" not in r.text


def test_bad_json_oversized_body_and_openai_limits(plain: str) -> None:
    r = http_json(
        "POST",
        f"{plain}/v1/answer",
        data=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status == 422 and "Traceback" not in r.text
    big = http_json("POST", f"{plain}/v1/answer", {**QUESTION, "question": "x" * 70_000}, timeout=30)
    assert big.status == 413 and "limit is 65536" in big.body["error"]["message"]
    too_many = http_json("POST", f"{plain}/v1/completions", {"prompt": "Q: x\nA: ", "n": 99}, timeout=30)
    assert too_many.status == 422 and "n must be at most 16" in too_many.text


def _load(url: str, clients: int, seconds: float, votes: int = 4) -> list[tuple[int, float]]:
    """``clients`` threads posting /v1/answer back to back for ``seconds``; (status, latency) each."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                status = http_json("POST", url, {**QUESTION, "votes": votes}, timeout=60).status
            except OSError:
                status = 0  # a dropped or hung connection
            with lock:
                results.append((status, time.monotonic() - start))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    return results


def _running_replicas(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments["StudentModel"]
    return int(status.replica_states.get("RUNNING", 0))


def test_load_autoscales_up_and_down_with_zero_5xx(always_a_model: Path, serve_port: int) -> None:
    scaling = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
                                      "upscale_delay_s": 1, "downscale_delay_s": 4, "metrics_interval_s": 0.5,
                                      "look_back_period_s": 2}}  # fmt: skip
    _deploy(always_a_model, "scale", scaling)
    url = f"http://127.0.0.1:{serve_port}/scale/v1/answer"
    assert _running_replicas("scale") == 1
    peak = [1]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _running_replicas("scale"))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = _load(url, clients=16, seconds=25)
    stop.set()
    watcher.join(timeout=10)
    statuses = Counter(s for s, _ in results)
    latencies = sorted(t for s, t in results if s == 200)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"load: {len(results)} requests in 25 s, statuses {dict(statuses)}, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )
    assert statuses[200] == len(results) and len(results) > 50
    assert peak[0] == 2, "sustained load should have added a replica"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _running_replicas("scale") > 1:
        time.sleep(1)
    assert _running_replicas("scale") == 1, "the extra replica should be removed once the load stops"


def test_crashed_replica_gives_clean_503_then_recovers(always_a_model: Path, serve_port: int) -> None:
    import psutil

    _deploy(always_a_model, "crash", request_timeout_s=30)
    url = f"http://127.0.0.1:{serve_port}/crash/v1/answer"
    assert http_json("POST", url, {**QUESTION, "votes": 2}, timeout=60).status == 200
    box: dict[str, list[tuple[int, float]]] = {}
    loader = threading.Thread(target=lambda: box.setdefault("r", _load(url, clients=4, seconds=8, votes=8)))
    loader.start()
    time.sleep(2)
    killed = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "StudentModel" in cmd and "crash" in cmd:
            os.kill(proc.info["pid"], signal.SIGKILL)
            killed += 1
    loader.join(timeout=120)
    assert killed >= 1
    statuses = Counter(s for s, _ in box["r"])
    assert set(statuses) <= {200, 503}, statuses  # never a hang (0), a 500 or a stack trace
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if http_json("POST", url, {**QUESTION, "votes": 2}, timeout=60).status == 200:
            break
        time.sleep(2)
    else:
        pytest.fail("the replica was not replaced within 120 s")
