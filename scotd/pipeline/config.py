"""``PipelineConfig`` and the students it plans: what ``scotd pipeline`` runs, validated up front.

Apart from the driver (``scotd.pipeline.run``) so that the report (``scotd.pipeline.report``) can
read both without importing the driver back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from scotd.artifacts import Evaluation, StudentRun, TrainingSet
from scotd.config import ConfigSection, StageConfig, StageSection, validate_section
from scotd.corpus.config import CorpusConfig
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


class StudentSpec(ConfigSection):
    """One condition of an experiment: a student recipe (``students:`` in an experiment config)."""

    key: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.]*$", description="directory name of its corpus and evaluation"
    )
    label: str = Field(description="its name in the report")
    x: float | str | None = Field(
        None, description="its place on the experiment's figure (N, a fraction, ...)"
    )
    corpus: dict[str, Any] = Field(
        default_factory=dict, description="`scotd corpus` fields: per_example, select, question_fraction, ..."
    )
    label_only: bool = Field(False, description="the label-only baseline (no rationale)")
    distill: dict[str, Any] = Field(
        default_factory=dict, description="`scotd distill` fields for this student only (target_order, ...)"
    )
    teacher_error_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the embedded teacher at this per-step error rate (teacher-quality grids)",
    )


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
    students: list[StudentSpec] = Field(
        default_factory=list,
        description="an experiment's students (conditions); empty = SCoTD with N, the N ablation, label-only",
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="train (and vote-sample) every student once per seed; empty = [seed]",
    )
    reference: str | None = Field(
        None, description="the condition the others are compared to (default: the first)"
    )
    x_label: str = Field("", description="what the experiment's figure puts on its x axis")
    teacher_error_rate: float | None = Field(
        None, ge=0, le=1, description="the embedded teacher's per-step error rate (unset: its default)"
    )
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
        self._check_students()
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

    def _check_students(self) -> None:
        keys = [s.key for s in self.students]
        if len(set(keys)) != len(keys):
            raise ValueError(f"students: keys must be unique, got {keys}")
        if self.reference is not None and self.reference not in keys:
            raise ValueError(
                f"reference {self.reference!r} is not a student key ({', '.join(keys) or 'none'})"
            )
        if self.students and {"n_ablation", "label_only"} & self.model_fields_set:
            raise ValueError(
                "n_ablation and label_only shape the default plan; with students, list each student"
            )
        rates = [self.teacher_error_rate, *(s.teacher_error_rate for s in self.students)]
        if self.teacher_base_url and any(r is not None for r in rates):
            raise ValueError("teacher_error_rate sets the embedded teacher; unset teacher_base_url to use it")
        for s in self.students:
            validate_section(CorpusConfig, {"input": "x", "out": "x", **s.corpus}, f"students.{s.key}.corpus")
            self.distill_config("", "", s.label_only, student=s.distill)

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

    def distill_config(
        self,
        corpus: str,
        out: str,
        label_only: bool = False,
        seed: int | None = None,
        student: Mapping[str, Any] | None = None,
    ) -> DistillConfig:
        """A student's training config; an experiment's ``seed`` and the student's own fields
        (``StudentSpec.distill``) override the recipe's."""
        tiny = self.distill.values.get("student", "tiny") == "tiny"
        defaults = {**(TINY_RECIPE if tiny else {}), "seed": self.seed}
        owned: dict[str, Any] = {**(student or {}), "corpus": corpus, "out": out, "label_only": label_only}
        return self.distill.build(defaults, owned if seed is None else {**owned, "seed": seed})

    def eval_config(
        self,
        model: str,
        out: str,
        name: str,
        label_only: bool,
        split: str | None = None,
        seed: int | None = None,
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
        return self.eval.build(defaults, owned if seed is None else {**owned, "seed": seed})


@dataclass(frozen=True)
class Student:
    """One student of the comparison: its corpus recipe and how it is reported."""

    key: str  # directory name: scotd, scotd_n1, label_only (experiments: the condition, -s<seed> past the first)
    label: str  # name in the report: "SCoTD (N=30)"
    n: int | None  # teacher chains per question it learns from (None: labels only)
    corpus: dict[str, Any] = field(default_factory=dict)
    condition: str = ""  # the experiment's condition (the key without the seed); "" in the default plan
    seed: int | None = None  # training and vote-sampling seed (None: the pipeline's)
    teacher: str = ""  # the teacher variant it learns from ("" = the pipeline's teacher)
    x: float | str | None = None  # where it sits on the experiment's figure
    distill: dict[str, Any] = field(default_factory=dict)  # its own `scotd distill` fields

    @property
    def label_only(self) -> bool:
        return self.n is None


def students(cfg: PipelineConfig) -> list[Student]:
    """The default plan (SCoTD with N, each N of the ablation, label-only), or the experiment's
    conditions, once per seed."""
    mode = "balanced" if cfg.setting == "supervised" else "all"
    if cfg.students:
        seeds = cfg.seeds or [cfg.seed]
        return [
            Student(
                key=spec.key if i == 0 else f"{spec.key}-s{seed}",
                label=spec.label,
                n=None if spec.label_only else int(spec.corpus.get("per_example") or cfg.n),
                corpus={"mode": mode, "variant": "label-only" if spec.label_only else "cot", **spec.corpus},
                condition=spec.key,
                seed=seed,
                teacher=teacher_variant(spec.teacher_error_rate),
                x=spec.x,
                distill=spec.distill,
            )
            for spec in cfg.students
            for i, seed in enumerate(seeds)
        ]
    plan = [Student("scotd", f"SCoTD (N={cfg.n})", cfg.n, {"mode": mode, "variant": "cot"})]
    for k in cfg.n_ablation:
        plan.append(
            Student(f"scotd_n{k}", f"SCoTD (N={k})", k, {"mode": mode, "variant": "cot", "per_example": k})
        )
    if cfg.label_only:
        plan.append(Student("label_only", "label-only", None, {"mode": mode, "variant": "label-only"}))
    return plan


def teacher_variant(error_rate: float | None) -> str:
    """The teacher directory suffix of an embedded-teacher variant ("" = the configured teacher)."""
    return "" if error_rate is None else f"error{error_rate:g}"


@dataclass(frozen=True)
class Outcome:
    """One student of the comparison, through every stage: what the report is made of."""

    student: Student
    training_set: TrainingSet
    run: StudentRun
    evaluation: Evaluation
    probes: dict[str, Evaluation] = field(default_factory=dict)  # split -> the same student scored there
