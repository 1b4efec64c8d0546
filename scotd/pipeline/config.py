"""``PipelineConfig`` and the students it plans: what ``scotd pipeline`` runs, validated up front.

Apart from the driver (``scotd.pipeline.run``) so that the report (``scotd.pipeline.report``) can
read both without importing the driver back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from scotd.artifacts import Evaluation, StudentRun, TrainingSet
from scotd.config import StageConfig, StageSection
from scotd.distill.config import TINY_RECIPE, DistillConfig
from scotd.eval.config import EvalConfig
from scotd.sample.config import SampleConfig
from scotd.teacher.prices import price_for

_HINT = "use the top-level fields (task, n, train_questions, eval_split, eval_questions, out) instead"


class SampleSection(StageSection[SampleConfig]):
    stage, name, owned_hint = SampleConfig, "sample", _HINT
    owned = ("task", "split", "limit", "n", "out", "dry_run", "progress", "data_dir", "seed")


class DistillSection(StageSection[DistillConfig]):
    stage, name, owned_hint = DistillConfig, "distill", _HINT
    owned = ("corpus", "out", "name", "label_only")


class EvalSection(StageSection[EvalConfig]):
    stage, name, owned_hint = EvalConfig, "eval", _HINT
    owned = ("model", "task", "split", "limit", "data_dir", "out", "name", "label_only", "progress")


class PipelineConfig(StageConfig):
    task: str = Field("synthetic", description="csqa | openbookqa | quarel | synthetic | jsonl:PATH")
    data_dir: str | None = Field(
        None, description="task data directory (default $SCOTD_DATA_DIR, ../shared/data)"
    )
    seed: int = Field(0, description="seed of the synthetic task, training and bootstrap intervals")
    setting: Literal["supervised", "few-shot"] = Field(
        "supervised",
        description="supervised: keep correct chains, gold labels, greedy is the headline metric; "
        "few-shot: keep every chain with the teacher's labels, self-consistency is the headline",
    )
    train_questions: int | None = Field(1000, ge=1, description="training questions (None = whole split)")
    eval_split: Literal["train", "validation", "test"] = Field(
        "test", description="split the students are scored on"
    )
    eval_questions: int | None = Field(300, ge=1, description="questions scored (None = whole split)")
    n: int = Field(30, ge=1, description="teacher chains per training question")
    n_ablation: list[int] = Field(
        default_factory=lambda: [1], description="smaller N to train students on too (the N ablation)"
    )
    label_only: bool = Field(True, description="also train the label-only baseline")
    probe_splits: list[Literal["contrast", "ood"]] = Field(
        default_factory=list,
        description="also score every student on these robustness probes (synthetic task: contrast = "
        "minimally edited test questions, ood = more steps than training)",
    )
    out: str = Field("outputs/pipeline/demo", description="run directory (path or URI)")
    teacher_base_url: str | None = Field(
        None, description="OpenAI-compatible teacher; unset = start the embedded scotd teacher-sim"
    )
    teacher_model: str = Field("scotd-teacher-sim")
    teacher_api: Literal["completions", "chat"] = Field("completions")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var with the teacher key")
    max_cost_usd: float | None = Field(None, ge=0, description="teacher budget cap")
    dry_run: bool = Field(False, description="only print what the teacher stage would cost")
    progress: bool = Field(True, description="progress bars (teacher, each training, each evaluation)")
    ray_logs: bool = Field(
        False, description="stream Ray's worker logs (every step, vLLM start-up) to the console too"
    )
    sample: SampleSection = Field(
        default_factory=SampleSection, description="more `scotd sample` fields (limits, pool, ...)"
    )
    distill: DistillSection = Field(
        default_factory=DistillSection,
        description="`scotd distill` fields; the tiny recipe fills in for student tiny",
    )
    eval: EvalSection = Field(
        default_factory=EvalSection, description="`scotd eval` fields (votes, engine, ...)"
    )

    @field_validator("n_ablation")
    @classmethod
    def _ablation(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every N in n_ablation must be >= 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _sections(self) -> PipelineConfig:
        """Validate every stage's section now, so a typo fails before any teacher call."""
        for split in self.probe_splits:
            self.eval_config("", "", "", False, split)  # the task must have the probe
        if any(k >= self.n for k in self.n_ablation):
            raise ValueError(f"n_ablation {self.n_ablation} must be below n={self.n}")
        self.distill_config("", "")  # each section, validated by its stage's own model
        self.eval_config("", "", "", False)
        budget = self.sample.values.get("budget", {})
        budget = budget if isinstance(budget, dict) else {}  # anything else: validate_section names it
        priced = any(budget.get(k) is not None for k in ("prompt_price_per_1k", "completion_price_per_1k"))
        if self.max_cost_usd is not None and not priced and not price_for(self.teacher_model).known:
            raise ValueError(
                f"max_cost_usd is set but no price is known for teacher_model {self.teacher_model!r}, so "
                "the cap could not bind; set sample.budget.prompt_price_per_1k and "
                "sample.budget.completion_price_per_1k (USD per 1k tokens), or drop max_cost_usd"
            )
        self.sample_config("http://127.0.0.1/v1", self.out + "/teacher")
        return self

    def sample_config(self, base_url: str, out: str) -> SampleConfig:
        """The teacher stage: the top-level fields, the ``sample:`` section, and the endpoint to use."""
        owned: dict[str, Any] = {
            "task": self.task,
            "split": "train",
            "limit": self.train_questions,
            "data_dir": self.data_dir,
            "seed": self.seed,
            "n": self.n,
            "out": out,
            "dry_run": self.dry_run,
            "progress": self.progress,
            "teacher": {
                "base_url": base_url,
                "model": self.teacher_model,
                "api": self.teacher_api,
                # '' = no key: the embedded teacher has no auth, and a provider key sent to it would
                # travel in clear over the cluster network for nothing.
                "api_key_env": self.api_key_env if self.teacher_base_url else "",
            },
            "budget": {"max_cost_usd": self.max_cost_usd},
        }
        return self.sample.build({}, owned)

    @property
    def recipe(self) -> DistillConfig:
        """The students' training recipe (every student trains with it, on its own training set)."""
        return self.distill_config("", "")

    def distill_config(self, corpus: str, out: str, label_only: bool = False) -> DistillConfig:
        tiny = self.distill.values.get("student", "tiny") == "tiny"
        defaults = {**(TINY_RECIPE if tiny else {}), "seed": self.seed}
        return self.distill.build(defaults, {"corpus": corpus, "out": out, "label_only": label_only})

    def eval_config(
        self, model: str, out: str, name: str, label_only: bool, split: str | None = None
    ) -> EvalConfig:
        defaults = {
            "votes": 30,
            # Two engine actors: on a CPU machine each gets one core (vLLM/torch run one thread per
            # actor), so one engine would leave half of a 2-core laptop idle.
            "num_engines": 2,
            "seed": self.seed,
        }
        owned = {
            "model": model,
            "task": self.task,
            "split": split or self.eval_split,
            "limit": self.eval_questions,
            "data_dir": self.data_dir,
            "out": out,
            "name": name,
            "label_only": label_only,
            "progress": self.progress,
        }
        return self.eval.build(defaults, owned)


@dataclass(frozen=True)
class Student:
    """One student of the comparison: its corpus recipe and how it is reported."""

    key: str  # directory name: scotd, scotd_n1, label_only
    label: str  # name in the report: "SCoTD (N=30)"
    n: int | None  # teacher chains per question it learns from (None: labels only)
    corpus: dict[str, Any] = field(default_factory=dict)

    @property
    def label_only(self) -> bool:
        return self.n is None


def students(cfg: PipelineConfig) -> list[Student]:
    mode = "balanced" if cfg.setting == "supervised" else "all"
    plan = [Student("scotd", f"SCoTD (N={cfg.n})", cfg.n, {"mode": mode, "variant": "cot"})]
    for k in cfg.n_ablation:
        plan.append(
            Student(f"scotd_n{k}", f"SCoTD (N={k})", k, {"mode": mode, "variant": "cot", "per_example": k})
        )
    if cfg.label_only:
        plan.append(Student("label_only", "label-only", None, {"mode": mode, "variant": "label-only"}))
    return plan


@dataclass(frozen=True)
class Outcome:
    """One student of the comparison, through every stage: what the report is made of."""

    student: Student
    training_set: TrainingSet
    run: StudentRun
    evaluation: Evaluation
    probes: dict[str, Evaluation] = field(default_factory=dict)  # split -> the same student scored there
