"""Budgets bind: a cost cap needs a price, prices come in pairs, reservations never under-count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scotd.config import ConfigError, load_config
from scotd.pipeline.run import PipelineConfig
from scotd.sample.config import SampleConfig
from scotd.sample.plan import plan_requests
from scotd.tasks import load_task
from scotd.tasks.schema import Example
from scotd.teacher import tokens
from scotd.teacher.prices import Price, price_for

PRICES = {"prompt_price_per_1k": 0.001, "completion_price_per_1k": 0.002}


def _sample(**over: Any) -> SampleConfig:
    return load_config(SampleConfig, overrides=over)


# --- prices -------------------------------------------------------------------------------------


def test_price_for_explicit_pairs_table_and_unknown() -> None:
    assert price_for("anything", 0.001, 0.002) == Price(0.001, 0.002)
    assert price_for("gpt-4o-mini-2024-07-18") == price_for("gpt-4o-mini")  # dated snapshot: the family
    assert price_for("gpt-4o-mini").known and not price_for("my-own-model").known
    assert price_for("anything", 0.0, 0.0).known  # an explicit free price is a price
    with pytest.raises(ValueError, match="both"):
        price_for("anything", 0.001, None)


@pytest.mark.parametrize("given", ["prompt_price_per_1k", "completion_price_per_1k"])
def test_half_a_price_is_refused_naming_both_fields(given: str) -> None:
    with pytest.raises(ConfigError) as err:
        _sample(budget={given: 0.001})
    msg = str(err.value)
    assert f"budget.{given} is set" in msg
    assert "budget.prompt_price_per_1k" in msg and "budget.completion_price_per_1k" in msg


def test_a_cap_on_an_unknown_price_is_an_error_before_any_call() -> None:
    # The case: an unpriced model and a tiny cap ran to the end uncapped.
    with pytest.raises(ConfigError) as err:
        _sample(teacher={"model": "my-own-model"}, budget={"max_cost_usd": 0.0000001})
    msg = str(err.value)
    assert "budget.max_cost_usd" in msg and "'my-own-model'" in msg
    assert "budget.prompt_price_per_1k" in msg and "budget.completion_price_per_1k" in msg
    # Each way out works: prices, a known model, no cap (then the cost just shows as $0).
    _sample(teacher={"model": "my-own-model"}, budget={"max_cost_usd": 1.0, **PRICES})
    _sample(teacher={"model": "gpt-4o-mini"}, budget={"max_cost_usd": 1.0})
    _sample(teacher={"model": "my-own-model"})
    _sample(teacher={"model": "my-own-model"}, budget={"max_total_tokens": 1000})


def test_the_pipeline_refuses_an_unpriced_cap_at_load_time() -> None:
    with pytest.raises(ConfigError, match=r"max_cost_usd is set but no price is known for teacher_model"):
        load_config(
            PipelineConfig,
            overrides={
                "teacher_base_url": "http://127.0.0.1:9/v1",
                "teacher_model": "m",
                "max_cost_usd": 1.0,
            },
        )
    with pytest.raises(ConfigError, match=r"budget.completion_price_per_1k"):
        load_config(
            PipelineConfig,
            overrides={
                "teacher_model": "m",
                "max_cost_usd": 1.0,
                "sample": {"budget": {"prompt_price_per_1k": 1}},
            },
        )
    load_config(
        PipelineConfig, overrides={"teacher_model": "m", "max_cost_usd": 1.0, "sample": {"budget": PRICES}}
    )
    load_config(PipelineConfig, overrides={"max_cost_usd": 1.0})  # the embedded teacher is priced ($0)


# --- prompt-token reservations --------------------------------------------------------------------

HOSTILE_TEXTS = [
    "plain English words, the kind averaging four characters per token",
    "漢字かな交じり文" * 40,  # 3 bytes a character: chars/4 would reserve a twelfth of the bytes
    "🙂🚀" * 50,  # 4 bytes each, often several tokens each
    " \t\n" * 100 + "x",
    "".join(chr(c) for c in range(0x370, 0x3FF)),
]


def _byte_level_tokenizer(tmp_path: Path, chat_template: str | None = None) -> Path:
    """A locally trained byte-level BPE saved like a Hugging Face model's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the teacher reasons step by step about the answer"] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    if chat_template:
        fast.chat_template = chat_template
    out = tmp_path / "tok"
    fast.save_pretrained(out)
    return out


def test_the_byte_bound_never_undercounts_a_real_tokenizer(tmp_path: Path) -> None:
    hf = tokens.counter_for(str(_byte_level_tokenizer(tmp_path)))
    assert hf.method.startswith("hf:")
    for text in HOSTILE_TEXTS:
        real = hf.text(text)
        assert tokens.BYTES.text(text) >= real, text[:20]
        # The old estimate (chars / 3 + 8) reserved less than the real count for non-Latin text.
    assert len(HOSTILE_TEXTS[1]) / 3 + 8 < hf.text(HOSTILE_TEXTS[1])


def test_a_local_tokenizer_counts_exactly_and_applies_its_chat_template(tmp_path: Path) -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    path = _byte_level_tokenizer(tmp_path, chat_template=template)
    counter = tokens.counter_for("served-name", str(path))
    assert counter.chat_len is not None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    text = "the teacher reasons"
    assert counter.text(text) == len(tok(text, add_special_tokens=False)["input_ids"]) + tokens.SPECIAL_TOKENS
    msgs = [("system", "be brief"), ("user", "the teacher reasons step by step " * 20)]
    rendered = "".join(f"<{r}>{c}\n" for r, c in msgs) + "<assistant>"
    exact = len(tok(rendered, add_special_tokens=False)["input_ids"])
    assert exact > 40  # the long message really is counted, not the number of keys of an encoding
    assert counter.messages(msgs) == exact + tokens.SPECIAL_TOKENS


def test_the_byte_bound_covers_chat_framing() -> None:
    msgs = [("system", "s"), ("user", "漢字" * 10)]
    assert tokens.BYTES.messages(msgs) >= sum(len(r.encode()) + len(c.encode()) for r, c in msgs) + 2 * 3


def test_an_unloadable_explicit_tokenizer_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"teacher.tokenizer: .*no such directory"):
        _sample(teacher={"tokenizer": str(tmp_path / "missing")})
    with pytest.raises(tokens.TokenizerUnavailable, match="tiktoken:no-such-encoding"):
        tokens.counter_for("m", "tiktoken:no-such-encoding")
    assert tokens.counter_for("a-model-no-tokenizer-knows") is tokens.BYTES


def test_plan_reserves_at_least_the_prompt_bytes_for_both_apis() -> None:
    ex = load_task("synthetic", "train", limit=1).examples[0]
    wide = Example(
        id="w", task="synthetic", split="train", question="漢字" * 200, choices=(("a", "x"), ("b", "y"))
    )
    for api in ("completions", "chat"):
        for p in plan_requests([ex, wide], _sample(n=2, teacher={"api": api, "model": "unpriced"})):
            prompt = p.request.prompt or "".join(c for _, c in p.request.messages)
            assert p.est_prompt_tokens >= len(prompt.encode("utf-8")), api
            assert p.est_tokens == p.est_prompt_tokens + 2 * p.request.max_tokens
