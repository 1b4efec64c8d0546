"""Pure pieces of ``scotd teacher-sim``: tokens and cuts, rate windows, prompt reading, validation."""

from __future__ import annotations

import random

import pytest

from scotd.prompts import student_prompt, teacher_prompt
from scotd.tasks import synthetic
from scotd.tasks.schema import Example
from scotd.teacher.sim.backends import Teacher
from scotd.teacher.sim.limits import SlidingWindowLimiter, format_duration, retry_headers
from scotd.teacher.sim.openai_api import ApiError, parse_request
from scotd.teacher.sim.prompt_reader import last_question
from scotd.teacher.sim.replay import ReplayStore
from scotd.teacher.sim.stats import request_identity
from scotd.teacher.sim.textops import completion_logprobs, count_tokens, cut, token_logprobs, tokenize


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("text", ["", "So the answer is: 9\n\n", "  a,b  c.\n", "10 - 7 = 3. (c) ok"])
def test_tokens_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_token_counts_are_words_and_punctuation() -> None:
    assert tokenize("She sells 7, so 10 - 7 = 3.") == [
        "She", " sells", " 7", ",", " so", " 10", " -", " 7", " =", " 3", ".",
    ]  # fmt: skip
    assert count_tokens("a b\n\n") == 3  # trailing whitespace is one token


@pytest.mark.parametrize(
    ("stop", "max_tokens", "text", "reason"),
    [
        (["\n\n"], 100, "One two.", "stop"),
        (["\n\n", "Q:"], 100, "One two.", "stop"),
        ([], 100, "One two.\n\nQ: three", "stop"),
        (["\n\n"], 2, "One two", "length"),
        ([], 3, "One two.", "length"),
    ],
)
def test_cut_applies_stop_then_max_tokens(stop: list[str], max_tokens: int, text: str, reason: str) -> None:
    result = cut("One two.\n\nQ: three", stop, max_tokens)
    assert (result.text, result.finish_reason) == (text, reason)
    assert result.tokens == tokenize(result.text)


def test_completion_logprobs_line_up_with_the_text() -> None:
    tokens = tokenize("Gina has 10 pens.")
    lps = token_logprobs(tokens, random.Random(0), 0.2)
    obj = completion_logprobs(tokens, lps, 3)
    assert obj["tokens"] == tokens and obj["token_logprobs"] == lps
    assert obj["text_offset"] == [0, 4, 8, 11, 16]
    for tok, lp, top in zip(tokens, lps, obj["top_logprobs"], strict=True):
        assert len(top) == 3 and top[tok] == lp and all(v <= lp for v in top.values())


def test_request_window_admits_capacity_then_says_when_to_retry() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(rpm=60, tpm=0, window_s=2, clock=clock)
    assert limiter.admit(10) is None
    clock.now += 0.5
    assert limiter.admit(10) is None
    rejection = limiter.admit(10)
    assert rejection is not None and rejection.kind == "requests"
    assert rejection.retry_after_s == pytest.approx(1.5)
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "0"
    clock.now += 1.5
    assert limiter.admit(10) is None
    assert "x-ratelimit-limit-tokens" not in limiter.headers()


def test_token_window_counts_prompt_and_completion_and_refuses_the_impossible() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(rpm=0, tpm=3000, window_s=2, clock=clock)  # 100 tokens a window
    assert limiter.admit(60) is None
    clock.now += 1
    rejection = limiter.admit(50)
    assert (
        rejection is not None and rejection.kind == "tokens" and rejection.retry_after_s == pytest.approx(1)
    )
    assert limiter.admit(40) is None
    assert limiter.headers()["x-ratelimit-remaining-tokens"] == "0"
    too_big = limiter.admit(101)
    assert too_big is not None and "too large" in too_big.message


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.12, "120ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (3723, "1h2m3s")]
)
def test_durations_use_openai_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_headers(0.01) == {"Retry-After": "1", "retry-after-ms": "10"}
    assert retry_headers(1.2)["Retry-After"] == "2"


def test_last_question_reads_the_prompt_layouts() -> None:
    ex = synthetic.generate("test", 1)[0]
    q = last_question(teacher_prompt(ex))
    assert q.stem == ex.question and q.choices == ex.choices
    obqa = Example("o1", "openbookqa", "test", "Sun is a (big) star", (("a", "x"), ("b", "y z")), "a")
    q = last_question("Q: demo (a) p (b) q\nA: blah\n\n" + student_prompt(obqa))
    assert q.stem == "Sun is a (big) star" and q.choices == obqa.choices
    quarel = Example("q1", "quarel", "test", "Which is faster?", (("A", "car"), ("B", "bike")), "A")
    assert last_question(student_prompt(quarel)).choices == quarel.choices
    assert last_question("What is 2 + 2?") == last_question("Q: What is 2 + 2?\nA:")
    assert last_question("What is 2 + 2?").choices == ()


def _body(**extra: object) -> dict[str, object]:
    return {"model": "m", "prompt": "Q: hi\nA:", **extra}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "prompt", None),
        (_body(prompt=["a", "b"]), "prompt", None),
        (_body(n=0), "n", None),
        (_body(n=129), "n", None),
        (_body(temperature=3), "temperature", None),
        (_body(stop=["a", "b", "c", "d", "e"]), "stop", None),
        (_body(logprobs=6), "logprobs", None),
        (_body(stream=True), "stream", None),
        (_body(max_tokens=9000), "prompt", "context_length_exceeded"),
    ],
)
def test_bad_requests_name_the_parameter(body: dict[str, object], param: str, code: str | None) -> None:
    with pytest.raises(ApiError) as info:
        parse_request(body, chat=False, max_n=128, context_tokens=8192)
    assert info.value.status == 400 and info.value.param == param and info.value.code == code


def test_chat_requests_read_the_last_user_message() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q: hi\nA:"}],
        "logprobs": True,
        "top_logprobs": 2,
    }
    req = parse_request(body, chat=True, max_n=128, context_tokens=100)
    assert req.prompt == "Q: hi\nA:" and req.top_logprobs == 2
    assert req.prompt_tokens == count_tokens("be brief") + count_tokens("Q: hi\nA:") + 8
    assert req.max_tokens == 100 - req.prompt_tokens


def test_identity_ignores_key_order_and_prefers_the_idempotency_key() -> None:
    assert request_identity(None, {"a": 1, "b": 2}) == request_identity(None, {"b": 2, "a": 1})
    assert request_identity(None, {"a": 1}) != request_identity(None, {"a": 2})
    assert request_identity("k1", {"a": 1}) == request_identity("k1", {"a": 2})


def test_fallback_names_a_choice_of_the_question_and_is_greedy_at_zero() -> None:
    teacher = Teacher("auto", 0.1, ReplayStore(None))
    prompt = "Q: What color is the sky?\nAnswer Choices:\n(A) blue\n(B) green\nA: "
    gen = teacher.generate(prompt, 5, 1.0, random.Random(0), run_on=True)
    assert gen.backend == "fallback"
    assert all(s.text.endswith(("So the answer is: (A)", "So the answer is: (B)")) for s in gen.samples)
    greedy = teacher.generate(prompt, 5, 0.0, random.Random(0), run_on=True)
    assert len({s.text for s in greedy.samples}) == 1
