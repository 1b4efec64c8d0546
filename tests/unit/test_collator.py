"""The completion-only collator: exact masks for OPT-, Llama- and GPT-2-style tokenizers (built locally).

The tokenizers have a character-level vocabulary and no merges, so every expected token below is
written out by hand: the expectations do not come from the code under test.
"""

from __future__ import annotations

import string

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from scotd.distill.collator import IGNORE_INDEX, collate, count_loss_tokens, encode_pair, texts_for_row
from scotd.student.factory import TokenLayout, prepare_tokenizer

PROMPT = "Q: x\nA: "
TARGET = "t (a)\n\n"
CHARS = string.ascii_letters + string.digits + string.punctuation


def opt_style() -> PreTrainedTokenizerFast:
    """OPT: byte-level BPE; ``</s>`` is both BOS (prepended) and EOS; ``<pad>`` = 1."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *sorted(alphabet)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def llama_style() -> PreTrainedTokenizerFast:
    """Llama 2: sentencepiece-style ``▁`` spaces (prepended to the first word), ``<s>`` BOS, no pad token."""
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "▁", "\n", *CHARS])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def gpt2_style() -> PreTrainedTokenizerFast:
    """GPT-2 / Qwen: nothing prepended, one ``<|endoftext|>`` for BOS/EOS/UNK, no pad token."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", *sorted(alphabet)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eot, eos_token=eot, unk_token=eot)


def ids(tok: PreTrainedTokenizerFast, pieces: list[str]) -> list[int]:
    vocab = tok.get_vocab()
    return [vocab[p] for p in pieces]


# Hand-written pieces: "Ġ" is a byte-level space and "Ċ" a byte-level newline.
CASES = {
    "opt": (
        opt_style,
        ["</s>", "Q", ":", "Ġ", "x", "Ċ", "A", ":", "Ġ"],
        ["t", "Ġ", "(", "a", ")", "Ċ", "Ċ", "</s>"],
        TokenLayout(prefix_ids=(2,), suffix_ids=(), eos_id=2, pad_id=1),
    ),
    # Llama prepends "▁" to the first word of every separately encoded text: the target starts with one.
    "llama": (
        llama_style,
        ["<s>", "▁", "Q", ":", "▁", "x", "\n", "A", ":", "▁"],
        ["▁", "t", "▁", "(", "a", ")", "\n", "\n", "</s>"],
        TokenLayout(prefix_ids=(1,), suffix_ids=(), eos_id=2, pad_id=0),
    ),
    "gpt2": (
        gpt2_style,
        ["Q", ":", "Ġ", "x", "Ċ", "A", ":", "Ġ"],
        ["t", "Ġ", "(", "a", ")", "Ċ", "Ċ", "<|endoftext|>"],
        TokenLayout(prefix_ids=(), suffix_ids=(), eos_id=0, pad_id=0),
    ),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_layout_is_measured_per_family(family: str) -> None:
    make, _, _, layout = CASES[family]
    assert prepare_tokenizer(make()) == layout


@pytest.mark.parametrize("family", sorted(CASES))
def test_exact_sequence_and_label_mask(family: str) -> None:
    make, prompt_pieces, target_pieces, _ = CASES[family]
    tok = make()
    layout = prepare_tokenizer(tok)
    enc = encode_pair(tok, layout, PROMPT, TARGET, max_length=64)
    assert enc.status == "ok"
    assert list(enc.input_ids) == ids(tok, prompt_pieces + target_pieces)
    assert enc.prompt_len == len(prompt_pieces)

    short = encode_pair(tok, layout, PROMPT, "t\n\n", max_length=64)
    batch = collate([(enc.input_ids, enc.prompt_len), (short.input_ids, short.prompt_len)], layout.pad_id)
    n, m = len(enc.input_ids), len(short.input_ids)
    assert batch["input_ids"].shape == (2, n)
    expected_labels = [IGNORE_INDEX] * len(prompt_pieces) + ids(tok, target_pieces)
    assert batch["labels"][0].tolist() == expected_labels
    # The short row: prompt masked, "t\n\n" + EOS learned, then padding masked.
    short_target = len(short.input_ids) - short.prompt_len
    assert batch["labels"][1].tolist() == (
        [IGNORE_INDEX] * short.prompt_len
        + list(short.input_ids[short.prompt_len :])
        + [IGNORE_INDEX] * (n - m)
    )
    assert short_target == (5 if family == "llama" else 4)  # (▁) t \n \n EOS
    assert batch["attention_mask"].tolist() == [[1] * n, [1] * m + [0] * (n - m)]
    assert batch["input_ids"][1, m:].tolist() == [layout.pad_id] * (n - m)
    assert count_loss_tokens(batch["labels"]) == len(target_pieces) + short_target


def test_pad_equal_to_eos_never_masks_the_real_eos() -> None:
    tok = gpt2_style()
    layout = prepare_tokenizer(tok)
    assert layout.pad_id == layout.eos_id
    a = encode_pair(tok, layout, PROMPT, TARGET, 64)
    b = encode_pair(tok, layout, PROMPT, "t\n\n", 64)
    batch = collate([(a.input_ids, a.prompt_len), (b.input_ids, b.prompt_len)], layout.pad_id)
    m = len(b.input_ids)
    assert batch["labels"][1, m - 1].item() == layout.eos_id  # the last real token: EOS, learned
    assert (batch["labels"][1, m:] == IGNORE_INDEX).all()  # the same id as padding: not learned


def test_truncation_keeps_the_target_and_reports_it() -> None:
    tok = opt_style()
    layout = prepare_tokenizer(tok)
    full = encode_pair(tok, layout, PROMPT, TARGET, 64)
    # 3 tokens too long: the prompt loses 3 tokens after its BOS, the target stays whole.
    cut = encode_pair(tok, layout, PROMPT, TARGET, len(full.input_ids) - 3)
    assert cut.status == "prompt_truncated"
    assert cut.input_ids[0] == 2 and cut.input_ids[1:] == full.input_ids[4:]
    assert cut.prompt_len == full.prompt_len - 3
    # A target that cannot fit even with an empty prompt is not trained on (and is counted upstream).
    assert encode_pair(tok, layout, PROMPT, TARGET, 5) == type(cut)((), 0, "target_too_long")


def test_collate_rounds_up_and_rejects_empty() -> None:
    batch = collate([([5, 6, 7], 1)], pad_id=0, pad_to_multiple_of=8)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7] + [IGNORE_INDEX] * 5]
    assert batch["input_ids"].dtype == torch.long
    with pytest.raises(ValueError):
        collate([], pad_id=0)


ROW = {
    "example_id": "q1",
    "task": "csqa",
    "split": "train",
    "question": "Where is milk kept?",
    "choice_labels": ["a", "b"],
    "choice_texts": ["oven", "fridge"],
    "gold": "b",
    "rationale": "Milk stays cold in a fridge.",
    "label": "b",
}


def test_texts_for_row_builds_the_paper_layout() -> None:
    prompt, target = texts_for_row(ROW)
    assert prompt == "Q: Where is milk kept?\nAnswer Choices:\n(a) oven\n(b) fridge\nA: "
    assert target == "Milk stays cold in a fridge. So the answer is: (b)\n\n"
    assert texts_for_row(ROW, label_only=True)[1] == "So the answer is: (b)\n\n"
    assert texts_for_row({**ROW, "rationale": ""})[1] == "So the answer is: (b)\n\n"


def test_real_prompt_round_trips_through_the_byte_level_tokenizer() -> None:
    tok = opt_style()
    layout = prepare_tokenizer(tok)
    prompt, target = texts_for_row(ROW)
    enc = encode_pair(tok, layout, prompt, target, 512)
    assert tok.decode(list(enc.input_ids[: enc.prompt_len]), skip_special_tokens=True) == prompt
    assert tok.decode(list(enc.input_ids[enc.prompt_len :]), skip_special_tokens=True) == target


def test_answer_first_targets_parse_like_the_papers() -> None:
    from scotd.distill.collator import texts_for_row
    from scotd.parsing import parse_choices

    row = {
        "example_id": "q", "task": "synthetic", "split": "train", "question": "Gina has 3 pens. She buys 2 more. How many?",
        "choice_labels": ["a", "b"], "choice_texts": ["5", "1"], "gold": "a", "rationale": "3 + 2 = 5.", "label": "a",
    }  # fmt: skip
    _, paper = texts_for_row(row)
    _, first = texts_for_row(row, answer_first=True)
    assert paper.startswith("3 + 2 = 5.") and first.startswith("So the answer is: 5\n3 + 2 = 5.")
    for target in (paper, first):
        parsed = parse_choices(target, [("a", "5"), ("b", "1")])
        assert parsed.label == "a" and parsed.rationale.strip() in ("3 + 2 = 5.", "")
