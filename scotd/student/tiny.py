"""The tiny student: a ~1 M-parameter Llama-style model and a tokenizer trained locally on the corpus.

For offline use, tests and the synthetic demo (nothing is downloaded, ever). ``build_tiny_student``
writes a Hugging Face directory (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``generation_config.json``) that loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and in vLLM.

Tokenizer choice (``TinySpec.tokenizer``):

- ``word`` — what the prototype measured to work on the synthetic task (shared/docs/synthetic-task.md):
  one token per word with its leading space (``" has"``), one per punctuation mark, one per other
  whitespace character, and every number 0–99 as a single token (``" 17"``), so a tiny model adds
  numbers token by token. Vocabulary: the pieces seen in the corpus (most frequent first, up to
  ``vocab_size``) plus all numbers 0–99, ASCII punctuation and single letters; anything else
  becomes ``<unk>``. Decoding concatenates pieces, so ``decode(encode(x)) == x`` exactly whenever
  ``x`` has no unseen word — always true of the prompt layout (``Q:``, ``Answer Choices:``, ``(a)``,
  newlines) and of synthetic questions and chains.
- ``bpe`` — the general fallback for real tasks (CSQA, OBQA): a byte-level BPE trained to
  ``vocab_size`` tokens. Lossless on any text; numbers may take several tokens.

Both add ``<s>`` in front (like Llama); ``</s>`` is the end of a target and ``<pad>`` pads.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from scotd.config import ConfigSection
from scotd.prompts import ANSWER_MARKER

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

TinyTokenizerKind = Literal["word", "bpe"]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
# A letter run, a number of at most two digits, one punctuation mark or one other whitespace
# character; each may carry ONE leading space. Every character of any string matches, so the
# pieces concatenate back to the input.
WORD_PATTERN = r" ?[^\W\d_]+| ?\d{1,2}| ?[^\w\s]| ?_|\s"
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPEC_FILE = "scotd_tiny.json"
# The prompt scaffold (scotd.prompts), so its words are in every word-level vocabulary.
LAYOUT = f"Q: ?\nAnswer Choices:\n(a) \nA: {ANSWER_MARKER} (a)\n\n{ANSWER_MARKER}"


class TinySpec(ConfigSection):
    """Shape of the tiny student (defaults: the prototype's 1.07 M-parameter model); also the
    ``tiny:`` section of ``DistillConfig``, whose default is this with ``tokenizer="bpe"``."""

    tokenizer: TinyTokenizerKind = Field(
        "word",
        description="word: words + numbers 0-99 as tokens (synthetic task); bpe: byte-level BPE (any text)",
    )
    vocab_size: int = Field(2048, ge=64, description="word: cap; bpe: target size")
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    ffn_size: int = Field(512, ge=8)
    max_positions: int = Field(1024, ge=16)


PROTOTYPE = TinySpec()


def _word_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")


def _word_vocab(texts: Iterable[str], vocab_size: int) -> dict[str, int]:
    """Specials, then the fixed pieces, then corpus pieces by (frequency desc, piece) up to ``vocab_size``.

    Every word is counted with and without its leading space: a text's first word has none
    (a target encoded on its own starts "So the answer is" or "Gina has"), elsewhere it has one.
    """
    splitter = _word_pre_tokenizer()
    counts: Counter[str] = Counter()
    for text in [*texts, LAYOUT]:
        counts.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    words = {piece.removeprefix(" ") for piece in counts if piece.removeprefix(" ")[:1].isalpha()}
    variants = sorted({v for w in words for v in (w, " " + w)} - set(counts))
    fixed = [f"{sp}{n}" for n in range(100) for sp in ("", " ")]
    fixed += [f"{sp}{c}" for c in _PUNCT + _LETTERS for sp in ("", " ")]
    fixed += ["\n", " ", "\t"]
    ranked = [piece for piece, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))] + variants
    vocab: dict[str, int] = {}
    for piece in [*SPECIAL_TOKENS, *fixed]:
        vocab.setdefault(piece, len(vocab))
    limit = max(vocab_size, len(vocab))
    for piece in ranked:
        if len(vocab) >= limit:
            break
        vocab.setdefault(piece, len(vocab))
    return vocab


def _train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def train_tokenizer(texts: Iterable[str], spec: TinySpec = PROTOTYPE) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` of kind ``spec.tokenizer`` trained on ``texts`` (deterministic).

    Special tokens: ``<pad>``=0, ``<s>``=1 (prepended by ``encode``), ``</s>``=2, ``<unk>``=3.
    """
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if spec.tokenizer == "word":
        tok = Tokenizer(models.WordLevel(vocab=_word_vocab(texts, spec.vocab_size), unk_token=UNK))
        tok.pre_tokenizer = _word_pre_tokenizer()
        tok.decoder = decoders.Fuse()
    elif spec.tokenizer == "bpe":
        tok = _train_bpe(texts, spec.vocab_size)
    else:
        raise ValueError(f"unknown tiny tokenizer {spec.tokenizer!r}; choose word or bpe")
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=spec.max_positions,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )


def build_tiny_student(
    texts: Iterable[str], out_dir: str | Path, spec: TinySpec = PROTOTYPE, seed: int = 0
) -> Path:
    """Train a tokenizer on ``texts``, build a random-init Llama-style model seeded with ``seed``,
    save both to ``out_dir``.

    Deterministic: the same texts, spec and seed give byte-identical weights and tokenizer. Returns
    ``out_dir``. The spec and seed are saved as ``scotd_tiny.json`` for provenance.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, spec)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Seed a private generator state so building a student never disturbs the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=256,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / SPEC_FILE).write_text(
        json.dumps({**spec.model_dump(), "seed": seed}, indent=2) + "\n", encoding="utf-8"
    )
    return out


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
