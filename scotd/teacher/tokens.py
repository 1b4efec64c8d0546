"""Prompt-token counts for rate-limit and budget reservations: exact where a tokenizer is at hand,
else an upper bound — never an average.

A reservation that under-counts lets the limiter admit a call that overshoots the provider's
tokens-per-minute window or the cost cap, so the count is, in order of preference:

1. ``teacher.tokenizer`` when given: a local Hugging Face tokenizer directory, or
   ``tiktoken:ENCODING``.
   ``tiktoken:o200k_base`` counts OpenAI's models exactly (tiktoken fetches its file once; that
   fetch is the user's explicit choice and is bounded to a few seconds).
2. The model's own tokenizer when it is known locally: the model name is a local Hugging Face
   model directory (a self-hosted server serving a path), or ``scotd-teacher-sim`` (the embedded
   teacher's documented word tokenizer). Nothing is ever downloaded unasked.
3. The prompt's UTF-8 byte count: every byte-level BPE (GPT-2/3/4, Llama 3, Qwen, ...) and every
   SentencePiece model with byte fallback (Llama 2, Mistral, Gemma) emits at most one token per
   byte, so bytes bound the tokens of the text itself. Typical English costs ~4 bytes per token,
   so this over-reserves ~4x: the difference is refunded when the response's ``usage`` arrives.

On top of the text, ``SPECIAL_TOKENS`` covers begin/end-of-text markers and a SentencePiece
prefix, and for chat ``PER_MESSAGE_TOKENS`` per message plus ``SPECIAL_TOKENS`` for the reply
header covers role markers (OpenAI documents 3 per message + 3; common open-model templates use
4-6). A server-side template that injects its own long system prompt is not bounded by this: give
that model's tokenizer in ``teacher.tokenizer`` and its chat template is applied exactly.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPECIAL_TOKENS = 8
PER_MESSAGE_TOKENS = 8
TIKTOKEN_LOAD_TIMEOUT_S = 5.0
TIKTOKEN_PREFIX = "tiktoken:"
SIM_MODEL = "scotd-teacher-sim"

Messages = Sequence[tuple[str, str]]


class TokenizerUnavailable(ValueError):
    """``teacher.tokenizer`` names a tokenizer that cannot be loaded here."""


@dataclass(frozen=True)
class PromptCounter:
    """Counts (or bounds) the prompt tokens of a completions prompt or a chat request.

    ``method`` says how, for logs and summaries: ``utf8-bytes``, ``tiktoken:o200k_base``,
    ``hf:/path/to/tokenizer``.
    """

    method: str
    encode_len: Callable[[str], int] | None = None  # None: the UTF-8 byte bound
    chat_len: Callable[[Messages], int] | None = None  # an exact chat-template count, when known

    def _len(self, text: str) -> int:
        return self.encode_len(text) if self.encode_len is not None else len(text.encode("utf-8"))

    def length(self, text: str) -> int:
        """Tokens (or their bound) of a piece of text, without any special tokens."""
        return self._len(text)

    def text(self, text: str) -> int:
        """Tokens (or their bound) of a completions prompt."""
        return self._len(text) + SPECIAL_TOKENS

    def messages(self, messages: Messages) -> int:
        """Tokens (or their bound) of a chat request's ``(role, content)`` messages."""
        if self.chat_len is not None:
            return self.chat_len(messages) + SPECIAL_TOKENS
        per_message = sum(
            self._len(role) + self._len(content) + PER_MESSAGE_TOKENS for role, content in messages
        )
        return per_message + 2 * SPECIAL_TOKENS  # begin-of-text, and the reply header the server appends


BYTES = PromptCounter("utf8-bytes")


@functools.lru_cache(maxsize=16)
def counter_for(model: str, tokenizer: str | None = None) -> PromptCounter:
    """The best counter for ``model``: see the module docstring for the order.

    Raises ``TokenizerUnavailable`` when an explicitly named ``tokenizer`` cannot be loaded
    (a typo must not silently fall back); automatic choices fall back to the byte bound.
    """
    if tokenizer:
        if tokenizer.startswith(TIKTOKEN_PREFIX):
            counter = _tiktoken_counter(tokenizer.removeprefix(TIKTOKEN_PREFIX))
        else:
            counter = _hf_counter(tokenizer)
        if counter is None:
            raise TokenizerUnavailable(
                f"teacher.tokenizer {tokenizer!r} cannot be loaded here: give a local Hugging Face "
                "tokenizer directory or tiktoken:ENCODING (with tiktoken installed), or leave it unset "
                "to reserve by UTF-8 bytes"
            )
        return counter
    if _is_hf_dir(model):
        counter = _hf_counter(model)
        if counter is not None:
            return counter
    if model == SIM_MODEL:  # the embedded teacher: its tokenizer is documented and local
        from scotd.teacher.sim.textops import count_tokens

        return PromptCounter(SIM_MODEL, encode_len=count_tokens)
    log.info("prompt tokens of %r are reserved by UTF-8 bytes (an upper bound; no local tokenizer)", model)
    return BYTES


def _is_hf_dir(path: str) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def _hf_counter(path: str) -> PromptCounter | None:
    if not _is_hf_dir(path):
        return None
    try:
        from transformers import AutoTokenizer

        tok: Any = AutoTokenizer.from_pretrained(str(Path(path).expanduser()), local_files_only=True)
    except Exception as e:  # a broken directory: the caller decides (error or the byte bound)
        log.warning("cannot load the tokenizer in %s (%s)", path, type(e).__name__)
        return None

    def encode_len(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    chat_len = None
    if getattr(tok, "chat_template", None):

        def chat_len(messages: Messages) -> int:
            rendered = tok.apply_chat_template(
                [{"role": r, "content": c} for r, c in messages], tokenize=True, add_generation_prompt=True
            )
            # transformers 5 returns a BatchEncoding (a Mapping, not a dict); 4.x a list of ids.
            ids = rendered["input_ids"] if isinstance(rendered, Mapping) else rendered
            return len(ids)

    return PromptCounter(f"hf:{path}", encode_len, chat_len)


def _tiktoken_counter(encoding: str) -> PromptCounter | None:
    """tiktoken's ``encoding``, loaded in a daemon thread: an uncached file means a download,
    which must not hang the driver of an offline cluster."""
    try:
        import tiktoken
    except ImportError:
        return None
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["enc"] = tiktoken.get_encoding(encoding)
        except Exception as e:
            box["error"] = e

    thread = threading.Thread(target=load, name="tiktoken-load", daemon=True)
    thread.start()
    thread.join(TIKTOKEN_LOAD_TIMEOUT_S)
    enc = box.get("enc")
    if enc is None:
        why = type(box["error"]).__name__ if "error" in box else f"not loaded in {TIKTOKEN_LOAD_TIMEOUT_S:g}s"
        log.info("tiktoken encoding %s is not available here (%s)", encoding, why)
        return None

    def encode_len(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return PromptCounter(f"tiktoken:{encoding}", encode_len)
