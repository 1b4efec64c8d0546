"""teacher-sim's Batch API, files and prompt caching, driven by the official ``openai`` client.

Real subprocesses on 127.0.0.1 with a scaled-down completion window (tens of milliseconds a
line); every poll is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types import Batch

from scotd.prompts import STOP, student_prompt, teacher_messages, teacher_prompt
from scotd.tasks import synthetic
from scotd.teacher.sim.process import TeacherSimProcess
from scotd.teacher.sim.textops import count_tokens, tokenize

pytestmark = pytest.mark.timeout(60)

MODEL = "scotd-teacher-sim"
FAST = ["--latency-base-ms", "0", "--latency-per-token-ms", "0"]
EXAMPLES = synthetic.generate("test", 3)
PROMPT = student_prompt(EXAMPLES[0])
TERMINAL = ("completed", "failed", "expired", "cancelled")
PRICE_PROMPT, PRICE_COMPLETION = 0.00015, 0.0006  # the config's defaults (gpt-4o-mini)


def client(sim: TeacherSimProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0, timeout=10)


def line(custom_id: str, url: str = "/v1/completions", **body: Any) -> dict[str, Any]:
    if url == "/v1/completions":
        body.setdefault("prompt", PROMPT)
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": MODEL, **body}}


def jsonl(lines: list[Any]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def start(api: openai.OpenAI, data: bytes, endpoint: str = "/v1/completions") -> Batch:
    uploaded = api.files.create(file=("in.jsonl", data), purpose="batch")
    return api.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]


def wait(api: openai.OpenAI, batch_id: str, timeout_s: float = 15.0, seen: set[str] | None = None) -> Batch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = api.batches.retrieve(batch_id)
        if seen is not None:
            seen.add(batch.status)
        if batch.status in TERMINAL:
            return batch
        time.sleep(0.01)
    raise AssertionError(f"batch {batch_id} did not end within {timeout_s}s")


def read(api: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(x) for x in api.files.content(file_id).text.splitlines()]


def answered(text: str) -> bool:
    """A synthetic chain that ends with its numeric answer (which may be wrong)."""
    return text.rsplit("So the answer is: ", 1)[-1].isdigit()


def cost(route: dict[str, Any], factor: float = 1.0) -> float:
    prompt = route["prompt_uncached"] + 0.5 * route["prompt_cached"]
    return factor * (prompt * PRICE_PROMPT + route["completion"] * PRICE_COMPLETION) / 1000


def post_json(
    sim: TeacherSimProcess, path: str, body: Any, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    """One raw POST (``body``: JSON, or bytes sent as they are); the reply must be JSON."""
    port = int(sim.root_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        assert resp.getheader("Content-Type", "").startswith("application/json")
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[TeacherSimProcess]:
    with TeacherSimProcess([*FAST, "--batch-validate-s", "0.05", "--batch-line-ms", "20"]) as server:
        yield server


def test_a_batch_completes_with_n_choices_billed_at_the_batch_discount(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    data = jsonl([line(f"q{i}", n=3, max_tokens=64, stop=STOP) for i in range(6)])
    uploaded = api.files.create(file=("in.jsonl", data), purpose="batch")
    assert (uploaded.purpose, uploaded.status, uploaded.bytes) == ("batch", "processed", len(data))
    assert api.files.retrieve(uploaded.id).filename == "in.jsonl" and uploaded.id.startswith("file-")
    created = api.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/completions",
        completion_window="24h",
        metadata={"run": "t1"},
    )
    assert created.status == "validating" and created.id.startswith("batch_")
    assert created.metadata == {"run": "t1"} and created.expires_at == created.created_at + 60
    done = wait(api, created.id)
    assert done.status == "completed"
    assert done.request_counts is not None and done.request_counts.model_dump() == {
        "total": 6, "completed": 6, "failed": 0,
    }  # fmt: skip
    assert done.error_file_id is None and done.errors is None and done.model == MODEL
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert created.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    out = read(api, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == [f"q{i}" for i in range(6)]
    for o in out:
        assert o["id"].startswith("batch_req_") and o["error"] is None
        assert o["response"]["status_code"] == 200 and o["response"]["request_id"]
        body = o["response"]["body"]
        assert body["object"] == "text_completion" and len(body["choices"]) == 3
        texts = [c["text"] for c in body["choices"]]
        assert all(answered(t) for t in texts)
        assert body["usage"]["prompt_tokens"] == count_tokens(PROMPT)
        assert body["usage"]["completion_tokens"] == sum(count_tokens(t) for t in texts)
        assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert api.files.retrieve(done.output_file_id or "").purpose == "batch_output"
    stats = sim.stats()
    assert (stats["batches_created"], stats["batch_lines_billed"], stats["online_requests_billed"]) == (
        1,
        6,
        0,
    )
    assert stats["paid_requests"] == 6 and stats["repeated_paid_requests"] == 0
    batch_route = stats["by_route"]["batch"]
    assert done.usage is not None and done.usage.output_tokens == batch_route["completion"]
    assert batch_route["cost_usd"] == pytest.approx(cost(batch_route, 0.5)) and batch_route["cost_usd"] > 0
    assert stats["cost_usd"] == pytest.approx(batch_route["cost_usd"])


def test_chat_batches_per_line_400s_and_the_newest_first_list(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    first = start(api, jsonl([line("only")]))
    chat_lines = [
        line(f"c{i}", "/v1/chat/completions", messages=teacher_messages(EXAMPLES[i]), n=2, max_tokens=128)
        for i in range(2)
    ]
    too_many = line("c-n", "/v1/chat/completions", messages=teacher_messages(EXAMPLES[0]), n=999)
    second = start(api, jsonl([*chat_lines, too_many]), "/v1/chat/completions")
    done = wait(api, second.id)
    assert done.status == "completed" and done.endpoint == "/v1/chat/completions"
    assert done.request_counts is not None and done.request_counts.model_dump() == {
        "total": 3, "completed": 2, "failed": 1,
    }  # fmt: skip
    for o in read(api, done.output_file_id):
        body = o["response"]["body"]
        assert body["object"] == "chat.completion" and len(body["choices"]) == 2
        assert all(answered(c["message"]["content"]) for c in body["choices"])
    [refused] = read(api, done.error_file_id)  # the online route's 400, in the error file
    assert refused["custom_id"] == "c-n" and refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["param"] == "n" and refused["error"] is None
    ids = [b.id for b in api.batches.list(limit=100).data]
    assert ids[:2] == [second.id, first.id]
    after = api.batches.list(limit=1, after=second.id)
    assert [b.id for b in after.data] == [first.id] and after.has_more == (len(ids) > 2)
    assert wait(api, first.id).status == "completed"
    assert sim.stats()["batch_lines_billed"] == 3  # "only" and the two chat lines


def test_a_bad_file_fails_the_batch_naming_each_line_and_bills_nothing(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    rows = [
        line("a"),
        '{"custom_id": "b", oops',
        line("a"),
        line("d", "/v1/chat/completions", messages=[{"role": "user", "content": "hi"}]),
        {**line("e"), "body": {"model": "gpt-4o-mini", "prompt": "hi"}},
    ]
    done = wait(api, start(api, jsonl(rows)).id)
    assert done.status == "failed" and done.failed_at and done.errors and done.errors.data
    assert {(e.line, e.code) for e in done.errors.data} == {
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "url_mismatch"), (5, "model_mismatch"),
    }  # fmt: skip
    assert done.request_counts is not None and done.request_counts.total == 0
    assert done.output_file_id is None and done.error_file_id is None
    empty = wait(api, start(api, b"\n\n").id)
    assert empty.status == "failed" and empty.errors and empty.errors.data
    assert [e.code for e in empty.errors.data] == ["empty_file"]
    stats = sim.stats()
    assert stats["batch_lines_billed"] == 0 and stats["batches_created"] == 2 and stats["cost_usd"] == 0
    # Bad create requests are JSON 4xx errors, never 5xx.
    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id="file-nope", endpoint="/v1/completions", completion_window="24h")
    status, body = post_json(
        sim, "/v1/batches", {"input_file_id": done.input_file_id, "endpoint": "/v1/embeddings"}
    )
    assert status == 400 and body["error"]["param"] == "endpoint"
    status, body = post_json(
        sim, "/v1/batches",
        {"input_file_id": done.input_file_id, "endpoint": "/v1/completions", "completion_window": "1h"},
    )  # fmt: skip
    assert status == 400 and body["error"]["param"] == "completion_window"
    broken = b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--xyz\r\nbroken'
    status, body = post_json(sim, "/v1/files", broken, "multipart/form-data; boundary=xyz")
    assert status == 400 and "malformed" in body["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
        api.batches.cancel(done.id)
    with pytest.raises(openai.NotFoundError):
        api.batches.retrieve("batch_nope")


def test_cancel_mid_way_keeps_the_lines_that_ran(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    created = start(api, jsonl([line(f"k{i}", max_tokens=16) for i in range(200)]))  # 4 s of lines
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = api.batches.retrieve(created.id).request_counts
        if counts is not None and counts.completed >= 2:
            break
        time.sleep(0.01)
    cancelling = api.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait(api, created.id)
    assert done.status == "cancelled" and done.cancelled_at and done.request_counts is not None
    ran = done.request_counts.completed
    assert 2 <= ran < 200 and done.request_counts.total == 200 and done.request_counts.failed == 200 - ran
    assert len(read(api, done.output_file_id)) == ran
    errors = read(api, done.error_file_id)
    assert len(errors) == 200 - ran
    assert all(e["response"] is None and e["error"]["code"] == "batch_cancelled" for e in errors)
    assert sim.stats()["batch_lines_billed"] == ran


def test_a_custom_id_billed_online_and_in_batches_counts_as_billed_twice(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    api.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=16, extra_headers={"Idempotency-Key": "ledger-1"}
    )
    data = jsonl([line("ledger-1", max_tokens=16), line("ledger-2", max_tokens=16)])
    assert wait(api, start(api, data).id).status == "completed"
    stats = sim.stats()
    assert (stats["online_requests_billed"], stats["batch_lines_billed"]) == (1, 2)
    assert stats["repeated_paid_requests"] == 1 and stats["lines_billed_twice"] == 1
    assert wait(api, start(api, data).id).status == "completed"  # the same lines bought again
    stats = sim.stats()
    assert stats["repeated_paid_requests"] == 3 and stats["lines_billed_twice"] == 3


def test_prompt_caching_reports_the_shared_prefix_and_discounts_it(sim: TeacherSimProcess) -> None:
    sim.reset_stats()
    api = client(sim)
    prefix = teacher_prompt(EXAMPLES[0]) * 3
    p1, p2 = (prefix + student_prompt(ex) for ex in EXAMPLES[1:3])
    t1, t2 = tokenize(p1), tokenize(p2)
    shared = next(i for i, (a, b) in enumerate(zip(t1, t2, strict=False)) if a != b)
    assert shared >= 1024  # the test's premise

    def cached(prompt: str, **extra: Any) -> int:
        resp = api.completions.create(model=MODEL, prompt=prompt, max_tokens=16, extra_body=extra)
        assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
        return resp.usage.prompt_tokens_details.cached_tokens or 0

    assert cached(p1) == 0
    assert cached(p2) == shared // 128 * 128
    assert cached(PROMPT) == cached(PROMPT) == 0  # short prompts are never cached
    assert cached(p1, prompt_cache_key="elsewhere", future_field=1) == 0  # another cache scope
    stats = sim.stats()["by_route"]["online"]
    assert stats["prompt_cached"] == shared // 128 * 128
    assert stats["cost_usd"] == pytest.approx(cost(stats))
    chat = [{"role": "system", "content": prefix}, {"role": "user", "content": student_prompt(EXAMPLES[1])}]
    for expect_hit in (False, True):
        resp = api.chat.completions.create(model=MODEL, messages=chat, max_tokens=16)  # type: ignore[arg-type]
        assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
        hit = resp.usage.prompt_tokens_details.cached_tokens or 0
        assert (hit >= 1024 and hit % 128 == 0) if expect_hit else hit == 0
    done = wait(api, start(api, jsonl([line("cached", prompt=p1, max_tokens=16)])).id)
    assert done.usage is not None and done.usage.input_tokens_details.cached_tokens == len(t1) // 128 * 128
    assert sim.stats()["by_route"]["batch"]["prompt_cached"] == len(t1) // 128 * 128
    sim.reset_stats()  # resets the cache too
    assert cached(p1) == 0


def test_line_failures_forced_expiry_queue_limit_and_file_caps() -> None:
    args = [
        *FAST, "--seed", "5", "--batch-validate-s", "0.02", "--batch-line-ms", "1",
        "--batch-line-failure-rate", "0.4", "--batch-expire-after-lines", "8",
        "--batch-queue-tokens", "3000", "--batch-max-file-bytes", "8000", "--files-max-total-bytes", "30000",
    ]  # fmt: skip
    with TeacherSimProcess(args) as server:
        api = client(server)
        done = wait(api, start(api, jsonl([line(f"f{i}") for i in range(12)])).id)
        assert done.status == "expired" and done.expired_at and done.request_counts is not None
        ok = read(api, done.output_file_id)
        errors = read(api, done.error_file_id)
        failed = [e for e in errors if e["response"] is not None]
        expired = [e for e in errors if e["response"] is None]
        assert 0 < len(ok) < 8 and len(ok) + len(failed) == 8, (len(ok), len(failed))
        assert all(e["response"]["status_code"] == 500 and "error" in e["response"]["body"] for e in failed)
        assert [e["custom_id"] for e in expired] == [f"f{i}" for i in range(8, 12)]
        assert all(e["error"]["code"] == "batch_expired" for e in expired)
        assert done.request_counts.model_dump() == {"total": 12, "completed": len(ok), "failed": 12 - len(ok)}
        assert server.stats()["batch_lines_billed"] == len(ok)  # failed lines are not billed
        # Over the enqueued-token limit: failed, nothing billed.
        big = wait(api, start(api, jsonl([line("big", n=10, max_tokens=400)])).id)
        assert big.status == "failed" and big.errors and big.errors.data
        assert big.errors.data[0].code == "token_limit_exceeded"
        assert server.stats()["batch_lines_billed"] == len(ok)
        # Upload limits: per file, purpose, name, and the total store.
        with pytest.raises(openai.APIStatusError) as info:
            api.files.create(file=("big.jsonl", b"x" * 9000), purpose="batch")
        assert info.value.status_code == 413
        with pytest.raises(openai.BadRequestError):
            api.files.create(file=("in.jsonl", b"{}"), purpose="fine-tune")
        with pytest.raises(openai.BadRequestError, match="jsonl"):
            api.files.create(file=("in.txt", b"{}"), purpose="batch")
        stored = []
        for _ in range(6):  # 30,000 bytes hold at most 4 of these (plus the files above)
            try:
                stored.append(api.files.create(file=("fill.jsonl", b"x" * 7000), purpose="batch").id)
            except openai.APIStatusError as e:
                assert e.status_code == 413 and "storage" in e.message.lower()
                break
        else:
            raise AssertionError("the total file cap never refused an upload")
        api.files.delete(stored[0])
        assert api.files.create(file=("fill.jsonl", b"x" * 7000), purpose="batch").bytes == 7000


def test_a_batch_past_its_window_expires_and_online_requests_are_answered_meanwhile() -> None:
    """Heavy lines (n=100 each): the server keeps answering online requests. 40 ms per line makes
    the batch at least 4 s of work whatever the CPU, so it outlives its 3 s window."""
    args = [*FAST, "--batch-validate-s", "0", "--batch-line-ms", "40", "--batch-window-s", "3"]
    with TeacherSimProcess(args) as server:
        api = client(server)
        lines = [line(f"w{i}", n=100, max_tokens=256) for i in range(100)]
        created = start(api, jsonl(lines))  # >= 4 s of work: more than the window
        assert created.expires_at == created.created_at + 3
        status = "validating"
        for _ in range(300):  # bounded: the window ends it within 3 s
            status = api.batches.retrieve(created.id).status
            if status != "validating":
                break
            time.sleep(0.01)
        assert status == "in_progress"
        for _ in range(3):
            assert api.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16).choices[0].text
        during = api.batches.retrieve(created.id)
        assert during.status == "in_progress"  # answered between lines, not after the batch
        done = wait(api, created.id)
        assert done.status == "expired" and done.request_counts is not None
        assert 1 <= done.request_counts.completed < 100
        assert len(read(api, done.error_file_id)) == 100 - done.request_counts.completed
        assert server.stats()["online_requests_billed"] == 3
