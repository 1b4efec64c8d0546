"""``CorpusConfig``: which samples, which filters, where the training set goes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from scotd.config import StageConfig
from scotd.subsample import SBERT_PREFIX, Strategy


class CorpusConfig(StageConfig):
    input: str = Field(
        "outputs/sample/synthetic-train", description="`scotd sample` output dir, or a corpus.parquet"
    )
    out: str = Field(
        "outputs/corpus/synthetic-train-{mode}",
        description="output dir or URI ({mode}, {variant}, {select}, {per_example} filled in)",
    )
    mode: Literal["all", "correct", "balanced"] = "balanced"
    dedup: Literal["none", "exact", "near"] = "exact"
    near_threshold: float = Field(
        0.9, gt=0, le=1, description="word-trigram Jaccard above which rationales are near-duplicates"
    )
    per_example: int | None = Field(
        None, ge=1, description="K chains per question, chosen by --select (default: the first K samples)"
    )
    select: Strategy = Field(
        "first",
        description="first: the first K samples, before filtering (the N ablation); random | diverse | "
        "likelihood | open-ended: down-sample the filtered chains to K (paper §4)",
    )
    embedder: str = Field(
        "tfidf", description="diverse: tfidf (offline) or sbert:MODEL (a local sentence-transformers model)"
    )
    seed: int = Field(0, description="seed of random picks (random, diverse, open-ended)")
    variant: Literal["cot", "label-only", "greedy"] = "cot"
    question_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="keep this share of the questions (seeded; smaller shares nest in larger)",
    )

    @model_validator(mode="after")
    def _k_for_selection(self) -> CorpusConfig:
        if self.select != "first" and self.per_example is None:
            raise ValueError(f"select {self.select!r} down-samples to K chains per question: set per_example")
        if self.embedder != "tfidf" and not self.embedder.startswith(SBERT_PREFIX):
            raise ValueError(f"embedder {self.embedder!r}: use tfidf or sbert:MODEL")
        return self

    def out_dir(self) -> str:
        return self.out.format(
            mode=self.mode, variant=self.variant, per_example=self.per_example or "all", select=self.select
        )
