"""The voting student as a hostile client would try it, over real HTTP on 127.0.0.1.

Every request the service will not serve must get a 4xx in the service's JSON error shape
(``{"error": {"message", "type", "param"}}``), never a 5xx, and must not hurt its neighbours.
Two apps: ``hostile`` (bearer auth on, the always-"(a)" student) and ``slow`` (a random student
that never stops on its own, a short deadline and a tiny queue: timeouts and overload).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from scotd.httpjson import HttpReply, http_json
from scotd.serve.config import ServeConfig
from scotd.serve.proxy_limits import CALLBACK, CALLBACK_ENV
from tests.conftest import SERVE_TEST_TOKEN, SERVE_TEST_TOKEN_ENV

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

# The token and the proxy's body limit are in the session Ray head's environment (tests/conftest.py).
TOKEN_ENV, TOKEN = SERVE_TEST_TOKEN_ENV, SERVE_TEST_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = {
    "question": "Tom has 3 apples. He eats 1. How many apples does Tom have now?",
    "choices": ["2", "3", "4"],
}


def _error(r: HttpReply, status: int, param: str | None = None) -> str:
    """Assert the status and the service's error shape; the message."""
    assert r.status == status, (r.status, r.text)
    body = r.body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param"}, body
    assert "Traceback" not in r.text and TOKEN not in r.text
    if param is not None:
        assert body["error"]["param"] == param, body
    return str(body["error"]["message"])


def _deploy(model: Path, name: str, model_options: dict[str, Any] | None = None, **cfg: Any) -> str:
    from ray import serve

    from scotd.serve.app import build_app

    config = ServeConfig.model_validate({"model": str(model), "engine": "hf", "threads": 1, **cfg})
    app = build_app(config, {"ray_actor_options": {"num_cpus": 0.5}, **(model_options or {})})
    serve.run(app, name=name, route_prefix=f"/{name}")
    return name


@pytest.fixture(scope="module")
def base(ray_session: str) -> Iterator[str]:
    from ray import serve

    from tests.helpers.ray_head import free_port

    if os.environ.get(TOKEN_ENV) != TOKEN or os.environ.get(CALLBACK_ENV) != CALLBACK:
        pytest.fail(f"${TOKEN_ENV} or ${CALLBACK_ENV} was set to something else before the Ray head started")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def hostile(always_a_model: Path, base: str) -> str:
    _deploy(always_a_model, "hostile", max_votes=16, auth_token_env=TOKEN_ENV)
    return f"{base}/hostile"


@pytest.fixture(scope="module")
def slow(base: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.helpers.tiny_models import random_student

    model = random_student(tmp_path_factory.mktemp("random"))
    _deploy(
        model,
        "slow",
        {"max_ongoing_requests": 2, "max_queued_requests": 2},
        request_timeout_s=2,
        max_new_tokens=512,
        max_votes=32,
        max_prompt_tokens=900,
    )
    return f"{base}/slow"


def _post(url: str, payload: Any) -> HttpReply:
    return http_json("POST", url, payload, headers=AUTH, timeout=60)


# --- temperature 0: greedy, one rationale voted once ----------------------------------------------


@pytest.mark.parametrize("temperature", [0, 1e-40, 0.009])
def test_near_zero_temperature_is_greedy_one_vote(hostile: str, temperature: float) -> None:
    r = _post(f"{hostile}/v1/answer", {**QUESTION, "temperature": temperature, "rationales": True})
    assert r.status == 200, r.text
    body = r.body
    assert (body["answer"], body["samples"], body["votes"]) == ("a", 1, {"a": 1})
    assert len(body["rationales"]) == 1
    done = _post(
        f"{hostile}/v1/completions",
        {"prompt": "Q: x?\nAnswer Choices:\n(a) y\n(b) z\nA: ", "n": 3, "temperature": temperature},
    )
    assert done.status == 200, done.text
    texts = [c["text"] for c in done.body["choices"]]
    assert len(texts) == 3 and len(set(texts)) == 1  # n copies of the one greedy completion
    chat = _post(f"{hostile}/v1/chat/completions", {"messages": [{"role": "user", "content": "x?"}], "n": 2, "temperature": temperature})  # fmt: skip
    assert chat.status == 200 and len(chat.body["choices"]) == 2, chat.text


def test_bad_neighbours_in_a_batch_hurt_only_themselves(hostile: str) -> None:
    good = {**QUESTION, "votes": 3}
    bad: list[tuple[str, Any]] = [
        ("/v1/answer", {**QUESTION, "temperature": 0, "votes": 10}),  # served, greedy
        ("/v1/completions", {"prompt": "word " * 5000, "n": 4}),  # 422: too many tokens
        ("/v1/answer", {**QUESTION, "choices": [{"label": "A", "text": "x"}, {"label": "a", "text": "y"}]}),
        ("/v1/completions", {"prompt": "Q: x\nA: ", "n": 2, "temperature": 0}),  # served, greedy
    ]
    requests = [("/v1/answer", good)] * 8 + bad
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        statuses = list(pool.map(lambda rp: _post(f"{hostile}{rp[0]}", rp[1]).status, requests))
    assert statuses[:8] == [200] * 8
    assert statuses[8:] == [200, 422, 422, 200]


# --- choice labels -----------------------------------------------------------------------------------


def test_auto_labels_skip_given_labels(hostile: str) -> None:
    r = _post(f"{hostile}/v1/answer", {"question": "Pick one", "choices": ["x", {"label": "a", "text": "y"}], "votes": 2})  # fmt: skip
    assert r.status == 200, r.text
    assert (r.body["answer"], r.body["answer_text"]) == ("a", "y")  # "x" was labelled b, not a second a


@pytest.mark.parametrize(
    ("choices", "param", "needle"),
    [
        ([{"label": "A", "text": "x"}, {"label": "a", "text": "y"}], "choices", "unique (ignoring case)"),
        (
            [{"label": ")\n", "text": "x"}, {"label": "b", "text": "y"}],
            "choices.0.labelled.label",
            "letters or digits",
        ),
        ([{"label": "a b", "text": "x"}, "y"], "choices.0.labelled.label", "letters or digits"),
        ([{"label": "abcd", "text": "x"}, "y"], "choices.0.labelled.label", "letters or digits"),
        (["x", "y\n(c) forged"], "choices.1", "line break"),
        ([{"label": "a", "text": "x", "extra": 1}, "y"], None, "extra"),
    ],
)
def test_bad_labels_and_choices_are_422(
    hostile: str, choices: list[Any], param: str | None, needle: str
) -> None:
    message = _error(_post(f"{hostile}/v1/answer", {**QUESTION, "choices": choices}), 422, param)
    assert needle in message, message


# --- prompt length and per-request work ------------------------------------------------------------


def test_over_long_prompt_is_422_at_once_and_small_requests_flow(hostile: str) -> None:
    start = time.monotonic()
    big = _post(f"{hostile}/v1/completions", {"prompt": "Q: " + "apples " * 8500 + "\nA: ", "n": 16})
    assert "this server accepts at most 512" in _error(big, 422, "prompt")
    assert time.monotonic() - start < 10  # counted, not generated
    chat = _post(
        f"{hostile}/v1/chat/completions", {"messages": [{"role": "user", "content": "pears " * 2000}]}
    )
    assert "tokens" in _error(chat, 422, "messages")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        small = list(
            pool.map(lambda _: _post(f"{hostile}/v1/answer", {**QUESTION, "votes": 1}).status, range(24))
        )
    assert small == [200] * 24


def test_openai_limits(hostile: str) -> None:
    assert "n must be at most 16" in _error(
        _post(f"{hostile}/v1/completions", {"prompt": "Q: x\nA: ", "n": 17}), 422, "n"
    )
    _error(_post(f"{hostile}/v1/completions", {"prompt": ["a", "b"]}), 422, "prompt")
    _error(_post(f"{hostile}/v1/completions", {"prompt": "x", "temperature": -1}), 422, "temperature")
    _error(
        _post(f"{hostile}/v1/chat/completions", {"messages": [{"role": "system", "content": "x"}]}),
        422,
        "messages",
    )


# --- auth, routes, methods, the schema ---------------------------------------------------------------


def test_every_route_follows_auth_and_the_error_shape(hostile: str) -> None:
    for method, path in [("GET", "/openapi.json"), ("GET", "/v1/models"), ("POST", "/v1/answer"),
                         ("GET", "/no/such/route"), ("DELETE", "/v1/answer"), ("GET", "/docs")]:  # fmt: skip
        r = http_json(method, f"{hostile}{path}", timeout=30)
        _error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
    wrong = http_json("GET", f"{hostile}/openapi.json", headers={"Authorization": "Bearer nope"}, timeout=30)
    _error(wrong, 401)
    odd = http_json("GET", f"{hostile}/v1/models", headers={"Authorization": b"Bearer \xff\xfe"}, timeout=30)
    _error(odd, 401)
    schema = http_json("GET", f"{hostile}/openapi.json", headers=AUTH, timeout=30)
    assert schema.status == 200 and "/v1/answer" in schema.body["paths"]
    _error(http_json("GET", f"{hostile}/no/such/route", headers=AUTH, timeout=30), 404)
    not_allowed = http_json("GET", f"{hostile}/v1/answer", headers=AUTH, timeout=30)
    assert "use POST" in _error(not_allowed, 405) and not_allowed.headers["allow"] == "POST"
    _error(http_json("DELETE", f"{hostile}/v1/models", headers=AUTH, timeout=30), 405)
    assert http_json("GET", f"{hostile}/healthz", timeout=10).body == {"status": "ok"}  # probes need no token


def _chunked_upload(url: str, total: int) -> tuple[bytes, int]:
    """POST ``total`` bytes chunked over a raw socket, stopping once a reply arrives or the server
    stops reading; (the reply's first bytes, bytes sent)."""
    parsed = urlsplit(url)
    piece = b"x" * 65536
    sent = 0
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        head = (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (TimeoutError, OSError):
            pass  # the server stopped reading (or closed): what we want
        sock.settimeout(30)
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _content_length(reply):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except ConnectionResetError:
            pass  # closed while we were still sending: the reply can be lost on the client's side
        return reply, sent


def _content_length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_bodies_are_bounded_while_read(hostile: str) -> None:
    reply, sent = _chunked_upload(f"{hostile}/v1/answer", 64 << 20)
    if not reply:  # a reset raced the reply (the server closes while the client still sends): once more
        reply, sent = _chunked_upload(f"{hostile}/v1/answer", 64 << 20)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"the limit is 65536" in reply and b"Traceback" not in reply, reply
    assert sent < 16 << 20, f"the server read {sent} bytes of a 64 MiB body before answering"
    declared = http_json("POST", f"{hostile}/v1/answer", data=b"x" * (2 << 20), headers=AUTH, timeout=60)
    assert "over 1048576 bytes" in _error(declared, 413)  # the proxy's own bound (proxy_limits.py)
    _error(_post(f"{hostile}/v1/answer", {**QUESTION, "question": "x" * 70_000}), 413)
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe\x00", b""):
        _error(http_json("POST", f"{hostile}/v1/answer", data=raw, headers=AUTH, timeout=30), 422)


def test_token_stays_out_of_logs_and_deployment_args(hostile: str, always_a_model: Path) -> None:
    from ray import cloudpickle

    from scotd.serve.app import build_app

    app = build_app(ServeConfig.model_validate({"model": str(always_a_model), "auth_token_env": TOKEN_ENV}))
    assert TOKEN.encode() not in cloudpickle.dumps(app)
    logs = Path("/tmp/ray/session_latest/logs")
    for path in logs.rglob("*") if logs.is_dir() else []:
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert TOKEN.encode() not in path.read_bytes(), f"the token leaked into {path}"


# --- deadlines, overload, a wedged engine -------------------------------------------------------------


def test_a_504_stops_the_generation_and_frees_the_slot(slow: str) -> None:
    start = time.monotonic()
    big = http_json(
        "POST", f"{slow}/v1/completions", {"prompt": "Q: x\nA: ", "n": 32, "max_tokens": 512}, timeout=60
    )
    assert "within 2 s" in _error(big, 504)
    assert time.monotonic() - start < 8
    start = time.monotonic()
    small = http_json(
        "POST", f"{slow}/v1/completions", {"prompt": "Q: x\nA: ", "n": 1, "max_tokens": 4}, timeout=60
    )
    assert small.status == 200, small.text
    # Had the big generation kept going, this one would have queued behind it and timed out too.
    assert time.monotonic() - start < 3


def test_overload_is_a_fast_503_with_retry_after(slow: str) -> None:
    def one(_: int) -> tuple[HttpReply, float]:
        start = time.monotonic()
        r = http_json(
            "POST", f"{slow}/v1/completions", {"prompt": "Q: x\nA: ", "n": 4, "max_tokens": 128}, timeout=60
        )
        return r, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    rejected = [(r, t) for r, t in results if r.status == 503]
    assert rejected, [r.status for r, _ in results]
    assert {r.status for r, _ in results} <= {200, 503, 504}
    for r, took in rejected:
        _error(r, 503)
        assert r.headers["retry-after"] == "1" and took < 2.5


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The model deployment's class itself, outside Ray, on a random student."""
    from scotd.serve.app import StudentModel
    from tests.helpers.tiny_models import random_student

    model = random_student(tmp_path_factory.mktemp("replica"))
    cfg = {"model": str(model), "engine": "hf", "threads": 1, "engine_wedged_after_s": 0.3}
    return StudentModel.func_or_class(ServeConfig.model_validate(cfg).model_dump())  # type: ignore[attr-defined]


def test_an_engine_failure_in_a_batch_stays_with_its_item(replica: Any) -> None:
    from scotd.serve.app import GenItem, _Job

    def job(prompt: str) -> _Job:
        item = GenItem(prompt=prompt, n=2, temperature=1.0, max_new_tokens=4, timeout_s=60)
        return _Job(item, time.monotonic() + 60)

    # The middle prompt overflows the engine's context: the engine raises for the whole call.
    jobs = [job("Q: a\nA: "), job("Q: " + "word " * 3000 + "\nA: "), job("Q: b\nA: ")]
    results = asyncio.run(replica._run(jobs, 2, 1.0, 4))
    assert [len(r.generations) for r in results] == [2, 0, 2]
    assert [r.error for r in results] == [None, "ValueError", None]


def test_health_check_fails_while_the_engine_is_wedged(replica: Any) -> None:
    """An engine call running past ``engine_wedged_after_s`` fails the check; once stopped, it passes."""
    from scotd.serve.app import GenItem, _Job

    replica.check_health()
    item = GenItem(prompt="Q: x\nA: ", n=32, temperature=1.0, max_new_tokens=1000, timeout_s=60)
    job = _Job(item, time.monotonic() + 60)
    worker = threading.Thread(
        target=lambda: asyncio.run(replica._engine_call([item.prompt], 32, 1.0, 1000, [job]))
    )
    worker.start()
    failed = None
    while worker.is_alive() and failed is None:
        time.sleep(0.05)
        try:
            replica.check_health()
        except RuntimeError as e:
            failed = str(e)
    assert failed is not None and "wedged" in failed, "the health check never saw the long engine call"
    job.cancelled.set()  # the stop signal ends the engine call within a step
    worker.join(timeout=30)
    assert not worker.is_alive()
    replica.check_health()
