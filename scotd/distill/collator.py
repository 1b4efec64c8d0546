"""From a corpus row to a padded training batch with a completion-only loss mask (pure; no Ray).

One training sequence (``encode_pair``)::

    [prompt tokens, as the tokenizer encodes the bare prompt at inference (BOS included)]
    [target tokens, encoded on their own]  [EOS]
     labels: -100 ...................................   target ids ....................   EOS

The prompt is ``Q: <question + choices>\\nA: `` and the target ``<rationale> So the answer is:
<answer>\\n\\n`` (``scotd.prompts``). Encoding the prompt alone, exactly as the evaluator and the
server will, makes the training prompt tokens identical to the inference prompt tokens.

Truncation never silently drops a target: a pair longer than ``max_length`` loses prompt tokens
from the left (after the BOS prefix) and is marked ``prompt_truncated``; a pair whose target
alone does not fit is marked ``target_too_long`` and holds no tokens — the data stage drops it
and counts it in the run summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from scotd.prompts import label_only_target, student_prompt, student_target
from scotd.student.factory import TokenLayout
from scotd.tasks.schema import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
EncodeStatus = Literal["ok", "prompt_truncated", "target_too_long"]


@dataclass(frozen=True)
class Encoded:
    """Token ids of one sequence; positions ``[0, prompt_len)`` are prompt (no loss)."""

    input_ids: tuple[int, ...]
    prompt_len: int
    status: EncodeStatus


def texts_for_row(
    row: Mapping[str, Any], label_only: bool = False, answer_first: bool = False
) -> tuple[str, str]:
    """``(prompt, target)`` for a ``scotd corpus`` training row.

    The target is the label-only one when ``label_only`` or when the row has no rationale
    (a ``label-only`` corpus).
    """
    example = Example.from_row(dict(row))
    rationale = str(row.get("rationale") or "")
    label = str(row["label"])
    if label_only or not rationale.strip():
        return student_prompt(example), label_only_target(example, label)
    return student_prompt(example), student_target(example, rationale, label, answer_first)


def encode_pair(
    tokenizer: PreTrainedTokenizerBase,
    layout: TokenLayout,
    prompt: str,
    target: str,
    max_length: int,
    append_eos: bool = True,
) -> Encoded:
    """Tokenise one (prompt, target) pair; see the module docstring for the layout and truncation."""
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    if layout.suffix_ids:  # a tokenizer that appends EOS to every input must not end the prompt with it
        prompt_ids = prompt_ids[: len(prompt_ids) - len(layout.suffix_ids)]
    target_ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if append_eos:
        target_ids.append(layout.eos_id)
    prefix = len(layout.prefix_ids)
    if prefix + len(target_ids) > max_length:
        return Encoded((), 0, "target_too_long")
    status: EncodeStatus = "ok"
    overflow = len(prompt_ids) + len(target_ids) - max_length
    if overflow > 0:
        prompt_ids = prompt_ids[:prefix] + prompt_ids[prefix + overflow :]
        status = "prompt_truncated"
    return Encoded(tuple(prompt_ids + target_ids), len(prompt_ids), status)


def collate(
    sequences: Sequence[tuple[Sequence[int], int]], pad_id: int, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad ``(input_ids, prompt_len)`` pairs to the longest one (dynamic padding).

    Returns ``input_ids``, ``attention_mask`` and ``labels``, each ``[B, T]`` int64 with ``T`` the
    longest length (rounded up to ``pad_to_multiple_of``). ``labels`` equals ``input_ids`` on target
    positions and ``-100`` on prompt and padding positions; it is NOT shifted (the loss shifts).
    """
    if not sequences:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(ids) for ids, _ in sequences)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch = len(sequences)
    input_ids = torch.full((batch, longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, longest), dtype=torch.long)
    labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, prompt_len) in enumerate(sequences):
        n = len(ids)
        row = torch.as_tensor(list(ids), dtype=torch.long)
        input_ids[i, :n] = row
        attention_mask[i, :n] = 1
        labels[i, prompt_len:n] = row[prompt_len:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def count_loss_tokens(labels: torch.Tensor) -> int:
    """Tokens that contribute to the loss: target positions after the one-step shift (``[B, T]`` -> int)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())
