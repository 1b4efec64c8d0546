"""``EvalConfig``: which model, which questions, which engine, how many votes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from scotd.config import StageConfig
from scotd.paths import model_display_name, task_slug
from scotd.tasks import splits_of
from scotd.voting import PAPER_KS


class EvalConfig(StageConfig):
    model: str = Field(
        "outputs/distill/synthetic/export", description="HF model dir (a `scotd distill` export)"
    )
    task: str = Field("synthetic", description="csqa | openbookqa | quarel | synthetic | jsonl:PATH")
    split: Literal["train", "validation", "test", "contrast", "ood"] = Field(
        "test",
        description="contrast, ood: the synthetic task's robustness probes (minimal edits, more steps)",
    )
    limit: int | None = Field(None, ge=1, description="first N questions")
    data_dir: str | None = None
    seed: int = 0
    engine: Literal["auto", "hf", "vllm"] = Field("auto", description="auto = vllm when it imports")
    greedy: bool = Field(True, description="also decode greedily (T=0), the supervised setting's metric")
    votes: int = Field(10, ge=0, description="K sampled rationales per question (0 = greedy only)")
    temperature: float = Field(0.7, gt=0, le=2, description="sampling temperature of the votes")
    ks: list[int] = Field(default_factory=lambda: list(PAPER_KS), description="vote counts to report")
    max_new_tokens: int = Field(128, ge=1)
    label_only: bool = Field(
        False, description="score a label-only model (the answer may come without the marker)"
    )
    prompt_style: Literal["student", "few-shot"] = Field(
        "student", description="few-shot: the teacher's demonstrations (prompting an undistilled model)"
    )
    batch_size: int = Field(
        64, ge=1, description="sequences per engine batch (hf) / prompts per Ray Data batch"
    )
    num_engines: int = Field(1, ge=1, description="engine actors (one model copy each)")
    num_cpus_per_engine: float = Field(1.0, gt=0)
    num_gpus_per_engine: float = Field(0.0, ge=0, description="GPUs per engine actor (0 on CPU machines)")
    resources_per_engine: dict[str, float] = Field(
        default_factory=dict,
        description="more Ray resources per engine actor, e.g. {accelerator: 1}: engines land only on node "
        "types that have them",
    )
    threads: int | None = Field(None, ge=1, description="torch threads per hf engine (default: all cores)")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
    out: str = Field("outputs/eval/{task}-{split}", description="output dir or URI")
    name: str | None = Field(
        None,
        description="label for this model in reports (default: the model dir name; a distill export's run dir)",
    )
    progress: bool = True

    @model_validator(mode="after")
    def _split_of_task(self) -> EvalConfig:
        if self.split not in splits_of(self.task):
            raise ValueError(f"split {self.split!r}: {self.task} has {', '.join(splits_of(self.task))}")
        return self

    def out_dir(self) -> str:
        return self.out.format(task=task_slug(self.task), split=self.split)

    def display_name(self) -> str:
        return self.name or model_display_name(self.model)
