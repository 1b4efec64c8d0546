"""Tiny students with known behaviour, built locally in seconds (no downloads)."""

from __future__ import annotations

from pathlib import Path

from scotd import prompts
from scotd.student.tiny import TinySpec, build_tiny_student
from scotd.tasks import Example, load_task

ALWAYS_A_TARGET = "So the answer is: (a)\n\n"


def questions(n: int = 200, split: str = "train") -> list[Example]:
    return load_task("synthetic", split, limit=n).examples


def _texts(exs: list[Example]) -> list[str]:
    # Prompts and targets are encoded apart, so the vocabulary is learned from them apart.
    return [t for ex in exs for t in (prompts.student_prompt(ex), ALWAYS_A_TARGET)]


def random_student(out_dir: Path) -> Path:
    """Random weights: sampled generations are diverse gibberish."""
    texts = _texts(questions())
    return build_tiny_student(texts, out_dir, TinySpec(num_layers=2), seed=1)


def always_a_student(out_dir: Path, steps: int = 150) -> Path:
    """A student trained to answer "(a)" to every question, whatever it is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exs = questions()
    build_tiny_student(_texts(exs), out_dir, TinySpec(num_layers=2), seed=2)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        picked = [exs[(step * 16 + i) % len(exs)] for i in range(16)]
        # Prompt and target tokenised apart, as the trainer and every engine see them.
        seqs = [
            (
                tok(prompts.student_prompt(ex))["input_ids"],
                tok(ALWAYS_A_TARGET, add_special_tokens=False)["input_ids"],
            )
            for ex in picked
        ]
        longest = max(len(p) + len(t) + 1 for p, t in seqs)
        ids = torch.full((len(seqs), longest), tok.pad_token_id)
        labels = torch.full((len(seqs), longest), -100)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for row, (p, t) in enumerate(seqs):
            full = [*p, *t, tok.eos_token_id]
            ids[row, : len(full)] = torch.tensor(full)
            mask[row, : len(full)] = 1
            labels[row, len(p) : len(full)] = torch.tensor(full[len(p) :])  # loss on the answer only
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
