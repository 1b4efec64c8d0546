"""``scotd teacher-sim`` as a real subprocess on 127.0.0.1, driven by the official ``openai`` client
and by raw HTTP. No Ray needed; every request has a short timeout and every loop a bound.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from scotd.parsing import parse_answer
from scotd.paths import resolve_data_dir
from scotd.prompts import STOP, question_block, student_prompt, teacher_messages, teacher_prompt
from scotd.tasks import load_task, synthetic
from scotd.teacher.sim.process import TeacherSimError, TeacherSimProcess
from scotd.teacher.sim.textops import count_tokens

pytestmark = pytest.mark.timeout(60)

FAST = ["--latency-base-ms", "0", "--latency-per-token-ms", "0"]
EXAMPLE = synthetic.generate("test", 1)[0]


def client(sim: TeacherSimProcess, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key=key, max_retries=0, timeout=10)


def post(
    sim: TeacherSimProcess, path: str, body: Any, headers: dict[str, str] | None = None, timeout_s: float = 5
) -> tuple[int, dict[str, str], bytes]:
    """One raw POST on a fresh connection: ``(status, headers, body)``; raises on a dropped connection."""
    port = int(sim.root_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def completion_body(example: Any = EXAMPLE, **extra: Any) -> dict[str, Any]:
    return {"model": "t", "prompt": student_prompt(example), "max_tokens": 256, "stop": STOP, **extra}


@pytest.fixture(scope="module")
def sim() -> Iterator[TeacherSimProcess]:
    with TeacherSimProcess(FAST) as server:
        yield server


def test_completions_with_n30_are_parseable_chains_with_consistent_usage(sim: TeacherSimProcess) -> None:
    prompt = teacher_prompt(EXAMPLE)
    resp = client(sim).completions.create(
        model="t", prompt=prompt, n=30, temperature=1.0, max_tokens=256, stop=STOP, logprobs=2
    )
    assert resp.object == "text_completion" and len(resp.choices) == 30
    assert [c.index for c in resp.choices] == list(range(30))
    parsed = [parse_answer(c.text, EXAMPLE) for c in resp.choices]
    assert sum(p.label is not None for p in parsed) >= 15  # a wrong value that is no choice: None
    assert 10 <= sum(p.label == EXAMPLE.gold for p in parsed) <= 30
    assert len({c.text for c in resp.choices}) >= 15
    assert resp.usage is not None and resp.usage.prompt_tokens == count_tokens(prompt)
    assert resp.usage.completion_tokens == sum(count_tokens(c.text) for c in resp.choices)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    for c in resp.choices:
        assert c.finish_reason == "stop" and "\n\n" not in c.text
        assert c.logprobs is not None and "".join(c.logprobs.tokens or []) == c.text
        assert len(c.logprobs.token_logprobs or []) == count_tokens(c.text)


def test_chat_with_n30_and_logprobs(sim: TeacherSimProcess) -> None:
    messages: Any = teacher_messages(EXAMPLE)
    resp = client(sim).chat.completions.create(
        model="t", messages=messages, n=30, temperature=1.0, max_tokens=256, logprobs=True, top_logprobs=3
    )
    assert resp.object == "chat.completion" and len(resp.choices) == 30
    texts = [c.message.content or "" for c in resp.choices]
    assert sum(parse_answer(t, EXAMPLE).label == EXAMPLE.gold for t in texts) >= 10
    assert all(t.rsplit("So the answer is: ", 1)[1].isdigit() for t in texts)
    for c in resp.choices:
        assert c.message.role == "assistant" and c.logprobs is not None and c.logprobs.content
        assert "".join(t.token for t in c.logprobs.content) == c.message.content
        assert all(len(t.top_logprobs) == 3 for t in c.logprobs.content)
    assert resp.usage is not None and resp.usage.completion_tokens == sum(count_tokens(t) for t in texts)


def test_greedy_is_identical_and_stop_and_max_tokens_cut_like_a_provider(sim: TeacherSimProcess) -> None:
    api = client(sim)
    greedy = api.completions.create(
        model="t", prompt=student_prompt(EXAMPLE), n=5, temperature=0, max_tokens=256
    )
    assert len({c.text for c in greedy.choices}) == 1
    run_on = greedy.choices[0].text
    assert "\n\nQ: " in run_on  # a base model keeps writing past its answer...
    stopped = api.completions.create(
        model="t", prompt=student_prompt(EXAMPLE), temperature=0, max_tokens=256, stop=[STOP]
    )
    assert stopped.choices[0].text == run_on.split(STOP)[0] and stopped.choices[0].finish_reason == "stop"
    short = api.completions.create(model="t", prompt=student_prompt(EXAMPLE), temperature=0, max_tokens=5)
    assert short.choices[0].finish_reason == "length" and count_tokens(short.choices[0].text) == 5
    assert run_on.startswith(short.choices[0].text)
    default = api.completions.create(model="t", prompt=student_prompt(EXAMPLE), temperature=0)
    assert count_tokens(default.choices[0].text) == 16  # the completions API's default max_tokens


def test_bad_requests_are_400s_that_say_why(sim: TeacherSimProcess) -> None:
    api = client(sim)
    with pytest.raises(openai.BadRequestError, match="split it"):
        api.completions.create(model="t", prompt="Q: x\nA:", n=129)
    with pytest.raises(openai.BadRequestError) as info:
        api.completions.create(model="t", prompt="word " * 8190, max_tokens=10)
    assert info.value.code == "context_length_exceeded"
    status, _, body = post(sim, "/v1/completions", b"{not json")
    assert status == 400 and "JSON" in json.loads(body)["error"]["message"]
    assert client(sim).models.list().data[0].id == "scotd-teacher-sim"


def _json_error(status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    assert headers["content-type"].startswith("application/json"), (status, raw[:200])
    error: dict[str, Any] = json.loads(raw)["error"]
    return error


def test_hostile_requests_get_json_4xx_errors_never_text_500s(sim: TeacherSimProcess) -> None:
    before = sim.stats()
    nested = b'{"model": "t", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, headers, raw = post(sim, "/v1/completions", nested)
    assert status == 400 and "nests too deeply" in _json_error(status, headers, raw)["message"]
    status, headers, raw = post(sim, "/v1/chat/completions", b"[" * 50_000)
    assert status == 400 and _json_error(status, headers, raw)["type"] == "invalid_request_error"
    status, headers, raw = post(sim, "/v1/no-such-route", completion_body())
    assert status == 404 and _json_error(status, headers, raw)["message"] == "Not Found"
    port = int(sim.root_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/completions")
        resp = conn.getresponse()
        assert resp.status == 405
        _json_error(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
    status, headers, raw = post(sim, "/v1/completions", b" " * (33 * 1024 * 1024), timeout_s=30)
    assert status == 413 and _json_error(status, headers, raw)
    after = sim.stats()
    assert after["paid_requests"] == before["paid_requests"]
    # The server is still serving.
    assert client(sim).completions.create(model="t", prompt="Q: x\nA:", max_tokens=5).choices[0].text


ODD_SHAPES = (
    "html",
    "error_body",
    "usage_missing",
    "usage_null",
    "usage_string",
    "usage_strings",
    "short_choices",
)


def _shape(status: int, raw: bytes, n: int) -> str:
    assert status == 200
    try:
        body = json.loads(raw)
    except ValueError:
        return "html" if raw.lstrip().startswith(b"<html>") else "?"
    if "error" in body:
        return "error_body"
    if len(body["choices"]) < n:
        return "short_choices"
    if "usage" not in body:
        return "usage_missing"
    usage = body["usage"]
    if usage is None:
        return "usage_null"
    if isinstance(usage, str):
        return "usage_string"
    return "usage_strings" if isinstance(usage["prompt_tokens"], str) else "ok"


def test_odd_provider_shapes_are_served_and_only_real_answers_billed() -> None:
    args = [*FAST, "--seed", "3", "--idempotency", "false"]
    for name in ODD_SHAPES:
        args += [f"--fault-{name.replace('_', '-')}", str(1 / len(ODD_SHAPES))]
    with TeacherSimProcess(args) as server:
        shapes = [
            _shape(*_status_body(post(server, "/v1/completions", completion_body(n=4))), 4) for _ in range(70)
        ]
        stats = server.stats()
    seen = Counter(shapes)
    assert set(seen) == set(ODD_SHAPES), seen
    assert {name: stats["outcomes"][name] for name in ODD_SHAPES} == dict(seen)
    billed = sum(n for name, n in seen.items() if name not in ("html", "error_body"))
    assert stats["paid_requests"] == billed and stats["repeated_paid_requests"] == billed - 1


def _status_body(response: tuple[int, dict[str, str], bytes]) -> tuple[int, bytes]:
    return response[0], response[2]


def test_unknown_questions_get_a_well_formed_fallback(sim: TeacherSimProcess, tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"id": "q1", "question": "What color is the sky?", "choices": ["blue", "green"]})
    )
    ex = load_task(f"jsonl:{path}", "test").examples[0]
    resp = client(sim).completions.create(
        model="t", prompt=student_prompt(ex), n=10, max_tokens=100, stop=STOP
    )
    labels = {parse_answer(c.text, ex).label for c in resp.choices}
    assert labels <= {"a", "b"} and None not in labels


def test_repeated_paid_requests_count_exactly_the_repeats(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    body = completion_body(n=2)
    for _ in range(2):
        assert post(sim, "/v1/completions", body)[0] == 200
    assert post(sim, "/v1/completions", completion_body(n=3))[0] == 200
    first = post(sim, "/v1/completions", completion_body(n=4), {"Idempotency-Key": "k1"})
    again = post(sim, "/v1/completions", completion_body(n=5), {"Idempotency-Key": "k1"})
    assert first[0] == again[0] == 200 and first[2] == again[2]  # the stored answer, unbilled
    stats = sim.stats()
    assert stats["paid_requests"] == 4 and stats["repeated_paid_requests"] == 1
    assert stats["outcomes"]["ok"] == 4 and stats["outcomes"]["replay"] == 1
    assert stats["backends"] == {"synthetic": 4}
    sim.reset_stats()
    assert sim.stats()["repeated_paid_requests"] == 0


def test_idempotency_key_in_flight_waits_and_can_be_disabled() -> None:
    """Two concurrent calls with one key: one is billed, the other gets the same answer."""
    with TeacherSimProcess(["--latency-base-ms", "500", "--latency-jitter", "0"]) as server:
        api = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)

        async def twice() -> list[Any]:
            call = api.completions.create(
                model="t",
                prompt=student_prompt(EXAMPLE),
                n=3,
                max_tokens=64,
                extra_headers={"Idempotency-Key": "same"},
            )
            return list(
                await asyncio.gather(
                    call,
                    api.completions.create(
                        model="t",
                        prompt=student_prompt(EXAMPLE),
                        n=3,
                        max_tokens=64,
                        extra_headers={"Idempotency-Key": "same"},
                    ),
                )
            )

        a, b = asyncio.run(twice())
        assert [c.text for c in a.choices] == [c.text for c in b.choices]
        stats = server.stats()
        assert stats["paid_requests"] == 1 and stats["outcomes"]["replay"] == 1
    with TeacherSimProcess([*FAST, "--idempotency", "false"]) as plain:
        for _ in range(2):
            assert post(plain, "/v1/completions", completion_body(), {"Idempotency-Key": "k"})[0] == 200
        stats = plain.stats()
        assert stats["paid_requests"] == 2 and stats["repeated_paid_requests"] == 1


def test_latency_is_non_blocking() -> None:
    with TeacherSimProcess(["--latency-base-ms", "600", "--latency-jitter", "0"]) as server:
        api = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)

        async def burst() -> float:
            start = time.monotonic()
            await asyncio.gather(
                *(api.completions.create(model="t", prompt="Q: x\nA:", max_tokens=5) for _ in range(20))
            )
            return time.monotonic() - start

        elapsed = asyncio.run(burst())
    assert 0.6 <= elapsed < 3.0  # 20 x 0.6 s sequentially would be 12 s


def _retry_after(headers: dict[str, str]) -> int:
    value = int(headers["retry-after"])
    assert value >= 1 and int(headers["retry-after-ms"]) >= 1
    return value


def test_429_exactly_when_the_request_window_is_full() -> None:
    with TeacherSimProcess([*FAST, "--rpm", "60", "--window-s", "2"]) as server:  # 2 requests a window
        body = completion_body(temperature=0)
        for _ in range(2):
            status, headers, _ = post(server, "/v1/completions", body)
            assert status == 200 and headers["x-ratelimit-limit-requests"] == "60"  # per minute, as OpenAI
        status, headers, raw = post(server, "/v1/completions", body)
        assert status == 429
        error = json.loads(raw)["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert (
            "x-ratelimit-reset-requests" in headers and "x-ratelimit-limit-tokens" not in headers
        )  # tpm unset
        time.sleep(_retry_after(headers))
        assert post(server, "/v1/completions", body)[0] == 200
        stats = server.stats()
    assert stats["outcomes"]["429"] == 1 and stats["paid_requests"] == 3


def test_429_exactly_when_the_token_window_is_full() -> None:
    capacity = 1000  # tokens a 2-second window
    with TeacherSimProcess([*FAST, "--tpm", str(capacity * 30), "--window-s", "2"]) as server:
        body = completion_body(n=3, temperature=0)  # greedy: every request costs the same
        status, headers, raw = post(server, "/v1/completions", body)
        assert status == 200
        cost = json.loads(raw)["usage"]["total_tokens"]
        assert headers["x-ratelimit-remaining-tokens"] == str((capacity - cost) * 30)  # scaled to a minute
        fits = capacity // cost
        assert 2 <= fits <= 8, cost  # the test's premise: a few requests fit
        for _ in range(fits - 1):
            assert post(server, "/v1/completions", body)[0] == 200
        status, headers, raw = post(server, "/v1/completions", body)
        assert status == 429 and json.loads(raw)["error"]["type"] == "tokens"
        time.sleep(_retry_after(headers))
        assert post(server, "/v1/completions", body)[0] == 200
        huge = completion_body(n=60, temperature=0)
        status, _, raw = post(server, "/v1/completions", huge)
        assert status == 429 and "too large" in json.loads(raw)["error"]["message"]
        stats = server.stats()
    # Rejected requests are not billed.
    assert stats["paid_requests"] == fits + 1 and stats["tokens"]["total"] == (fits + 1) * cost


FAULT_RATES = {"500": 0.1, "502": 0.1, "503": 0.1, "hang": 0.03, "drop": 0.1, "malformed": 0.1}
HANG_S = 0.3


def _classify(server: TeacherSimProcess, body: dict[str, Any]) -> str:
    start = time.monotonic()
    try:
        status, _, raw = post(server, "/v1/completions", body, timeout_s=HANG_S + 3)
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return "hang" if time.monotonic() - start >= HANG_S else "drop"
    if status != 200:
        return str(status)
    try:
        json.loads(raw)
    except ValueError:
        return "malformed"
    return "ok"


def test_fault_rates_hold_and_the_server_survives_every_fault() -> None:
    args = [*FAST, "--hang-s", str(HANG_S), "--seed", "7"]
    for name, rate in FAULT_RATES.items():
        args += [f"--fault-{name}", str(rate)]
    n = 400
    with TeacherSimProcess(args) as server:
        outcomes = [_classify(server, completion_body(max_tokens=20)) for _ in range(n)]
        stats = server.stats()
        assert server.proc is not None and server.proc.poll() is None
    seen = Counter(outcomes)
    for name, rate in FAULT_RATES.items():
        tolerance = 4 * math.sqrt(n * rate * (1 - rate)) + 2
        assert abs(seen[name] - n * rate) <= tolerance, (name, seen)
        # The server kept serving after this fault: a normal request succeeded afterwards.
        assert "ok" in outcomes[outcomes.index(name) + 1 :], name
    # The server's accounting matches what the client saw, and faults are never billed.
    assert {name: stats["outcomes"][name] for name in seen} == dict(seen)
    assert stats["paid_requests"] == seen["ok"]


def _recorded_chain(example_question: str) -> str | None:
    root = resolve_data_dir()
    folder = root / "distilling_step_by_step_cqa" if root else None
    if folder is None or not (folder / "cqa_train.json").is_file():
        return None
    with open(folder / "cqa_train.json", encoding="utf-8") as f:
        for index, line in enumerate(f):
            if " ".join(json.loads(line)["question"].split()) == " ".join(example_question.split()):
                chains = json.loads((folder / "llm" / f"train_CoT_{index // 1000}.json").read_text("utf-8"))
                return str(chains[index % 1000])
    return None


def test_replay_returns_the_recorded_palm_chain_cut_at_stop() -> None:
    examples = load_task("csqa", "train", limit=3).examples  # the in-repo slice (tests/fixtures/data)
    example = examples[2]
    recorded = _recorded_chain(example.question)
    assert recorded is not None, "the recorded PaLM chains must be in the data directory"
    assert "\n\nQ: " in recorded  # the run-on the stop sequence must cut
    prompt = f"{question_block(examples[0])}\nA: A demo. So the answer is: (a){STOP}{student_prompt(example)}"
    with TeacherSimProcess([*FAST, "--backend", "replay"]) as server:
        api = client(server)
        resp = api.completions.create(model="t", prompt=prompt, n=3, max_tokens=256, stop=STOP)
        assert [c.text for c in resp.choices] == [recorded.split(STOP)[0]] * 3
        assert parse_answer(resp.choices[0].text, example).label is not None
        chat = api.chat.completions.create(
            model="t", messages=[{"role": "user", "content": prompt}], stop=STOP
        )
        assert chat.choices[0].message.content == recorded.split(STOP)[0]
        assert server.stats()["backends"] == {"replay": 2}


def test_explicit_replay_without_data_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(TeacherSimError, match="replay needs"):
        TeacherSimProcess(["--backend", "replay", "--data-dir", str(tmp_path)], timeout_s=20).start()


def test_wrong_key_is_401_and_the_key_never_appears_in_the_output() -> None:
    key = "scotd-sim-test-key-9f8e7d"
    env = {"SCOTD_SIM_TEST_KEY": key}
    with TeacherSimProcess([*FAST, "--api-key-env", "SCOTD_SIM_TEST_KEY"], env=env, verbose=True) as server:
        server.reset_stats()  # the start-up probe of /v1/models was a 401 too
        with pytest.raises(openai.AuthenticationError) as info:
            client(server, "wrong").completions.create(model="t", prompt="Q: x\nA:", max_tokens=5)
        assert info.value.code == "invalid_api_key" and key not in str(info.value.body)
        assert post(server, "/v1/completions", completion_body())[0] == 401  # no header at all
        # Header bytes that are not UTF-8: a JSON 401, not a plain-text 500.
        status, headers, raw = post(
            server, "/v1/completions", completion_body(), {"Authorization": b"Bearer \xff\xfe"}
        )  # type: ignore[dict-item]
        assert status == 401 and headers["content-type"].startswith("application/json")
        assert json.loads(raw)["error"]["code"] == "invalid_api_key"
        ok = client(server, key).completions.create(model="t", prompt="Q: x\nA:", max_tokens=5)
        assert ok.choices[0].text
        stats = server.stats()
        output = server.output()
    assert stats["outcomes"]["401"] == 3 and stats["paid_requests"] == 1
    assert key not in output and "listening" in output
