"""A ``scotd corpus``-shaped training set for the synthetic task, without a teacher server.

For tests and benchmarks of the distill stage: the simulated teacher's own chain writer
(``scotd.teacher.sim.synthetic_cot.write_chain``, temperature 1, ≈70% correct) produces N samples
per question, and the real corpus filter (``scotd.selection.build``) turns them into the training
rows ``scotd corpus`` would write (``scotd.artifacts.TrainingSet``: same columns, same metadata).
The real path (``scotd teacher-sim`` + ``scotd sample`` + ``scotd corpus``) gives the same schema.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from scotd import storage
from scotd.artifacts import TrainingSet
from scotd.selection import CorpusSpec, Mode, build
from scotd.tasks import load_task
from scotd.tasks.synthetic import parse_question
from scotd.teacher.sim.synthetic_cot import DEFAULT_ERROR_RATE, write_chain


def synthetic_samples(questions: int, per_question: int, seed: int = 0) -> list[dict[str, Any]]:
    """Teacher-sample rows (the ``scotd sample`` corpus schema) for the first ``questions`` train questions."""
    rng = random.Random(f"scotd-demo-corpus-{seed}")
    rows: list[dict[str, Any]] = []
    for example in load_task("synthetic", "train", limit=questions).examples:
        problem = parse_question(example.question)
        assert problem is not None
        for i in range(per_question):
            chain = write_chain(problem, rng, 1.0, DEFAULT_ERROR_RATE)
            pred = next((label for label, text in example.choices if text == str(chain.value)), None)
            rows.append(
                {
                    **example.to_row(),
                    "rationale": chain.rationale,
                    "pred_label": pred,
                    "correct": None if pred is None else pred == example.gold,
                    "sample_index": i,
                    "request_key": f"demo-{example.id}-{i}",
                    "error": None,
                }
            )
    return rows


def write_demo_corpus(
    out_dir: str | Path, questions: int = 64, per_question: int = 4, mode: Mode = "balanced", seed: int = 0
) -> Path:
    """Write ``<out_dir>/train.parquet`` as ``scotd corpus --mode <mode>`` would; returns ``out_dir``."""
    train, _ = build(synthetic_samples(questions, per_question, seed), CorpusSpec(mode=mode, dedup="exact"))
    TrainingSet.write(storage.location(str(out_dir)), train, mode, "cot")
    return Path(out_dir)
