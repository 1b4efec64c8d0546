"""Students: the tiny factory (tokenizers, model, save/load) and resolving hub names offline."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from scotd.prompts import student_prompt, student_target
from scotd.student.factory import StudentUnavailable, decoder_layers, prepare_tokenizer, resolve_student
from scotd.student.tiny import TinySpec, build_tiny_student, count_parameters, train_tokenizer
from scotd.tasks import Example, load_task
from scotd.tasks.synthetic import parse_question
from scotd.teacher.sim.synthetic_cot import write_chain


def synthetic_texts(n: int = 60) -> list[str]:
    rng = random.Random(0)
    texts = []
    for ex in load_task("synthetic", "train", limit=n).examples:
        chain = write_chain(parse_question(ex.question), rng, 1.0, 0.1)  # type: ignore[arg-type]
        label = next((lab for lab, text in ex.choices if text == str(chain.value)), ex.gold or "a")
        texts += [student_prompt(ex), student_target(ex, chain.rationale, label)]
    return texts


CSQA_LIKE = Example(
    "c1", "csqa", "validation", "Where do you put milk?", (("a", "oven"), ("b", "fridge")), "b"
)


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_tokenizer_round_trips_the_prompt_layout(kind: str) -> None:
    texts = synthetic_texts()
    tok = train_tokenizer(texts, TinySpec(tokenizer=kind, vocab_size=512))  # type: ignore[arg-type]
    unseen = load_task("synthetic", "test", limit=20).examples  # other questions, same vocabulary
    for text in [*texts, *(student_prompt(e) for e in unseen), "So the answer is: 17\n\n"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    # The layout itself survives even where words are new (word-level turns those into <unk>).
    decoded = tok.decode(tok(student_prompt(CSQA_LIKE))["input_ids"], skip_special_tokens=False)
    assert "\nAnswer Choices:\n(a)" in decoded and decoded.endswith("\nA: ")
    if kind == "bpe":
        assert tok.decode(
            tok(student_prompt(CSQA_LIKE))["input_ids"], skip_special_tokens=True
        ) == student_prompt(CSQA_LIKE)


def test_word_tokenizer_has_numbers_as_single_tokens() -> None:
    tok = train_tokenizer(synthetic_texts(10), TinySpec(tokenizer="word"))
    for n in (0, 7, 42, 99):
        assert tok.convert_ids_to_tokens(tok(f"is {n}.", add_special_tokens=False)["input_ids"]) == [
            "is",
            f" {n}",
            ".",
        ]


def test_tiny_student_saves_loads_and_is_deterministic(tmp_path: Path) -> None:
    texts = synthetic_texts()
    a = build_tiny_student(texts, tmp_path / "a", TinySpec(tokenizer="word"))
    b = build_tiny_student(texts, tmp_path / "b", TinySpec(tokenizer="word"))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    model = AutoModelForCausalLM.from_pretrained(a)
    tok = AutoTokenizer.from_pretrained(a)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 0.9e6 < count_parameters(model) < 1.3e6  # ≈ 1.07 M, as the prototype
    assert len(decoder_layers(model)) == 4
    layout = prepare_tokenizer(tok)
    assert layout.prefix_ids == (tok.bos_token_id,) and layout.pad_id != layout.eos_id
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_hub_name_offline_fails_fast_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed loopback port
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.monotonic()
    with pytest.raises(StudentUnavailable) as err:
        resolve_student("facebook/opt-1.3b")
    assert time.monotonic() - start < 10
    assert "facebook/opt-1.3b" in str(err.value) and "--student tiny" in str(err.value)


def test_resolve_student_kinds(tmp_path: Path) -> None:
    assert resolve_student("tiny").kind == "tiny"
    assert resolve_student("s3://bucket/opt").kind == "uri"
    with pytest.raises(StudentUnavailable, match="does not exist"):
        resolve_student(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudentUnavailable, match=r"config\.json"):
        resolve_student(str(tmp_path / "empty"))
    build_tiny_student(synthetic_texts(5), tmp_path / "m")
    assert resolve_student(str(tmp_path / "m")).kind == "local"
