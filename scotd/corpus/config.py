"""``CorpusConfig``: which samples, which filters, where the training set goes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scotd.config import StageConfig


class CorpusConfig(StageConfig):
    input: str = Field(
        "outputs/sample/synthetic-train", description="`scotd sample` output dir, or a corpus.parquet"
    )
    out: str = Field(
        "outputs/corpus/synthetic-train-{mode}", description="output dir or URI ({mode}, {variant} filled in)"
    )
    mode: Literal["all", "correct", "balanced"] = "balanced"
    dedup: Literal["none", "exact", "near"] = "exact"
    near_threshold: float = Field(
        0.9, gt=0, le=1, description="word-trigram Jaccard above which rationales are near-duplicates"
    )
    per_example: int | None = Field(
        None, ge=1, description="keep the first N samples per question (N ablation)"
    )
    variant: Literal["cot", "label-only", "greedy"] = "cot"

    def out_dir(self) -> str:
        return self.out.format(mode=self.mode, variant=self.variant, per_example=self.per_example or "all")
