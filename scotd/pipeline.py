"""``scotd pipeline``: the whole method in one command.

With no arguments it runs on the embedded default — ``scotd teacher-sim`` on 127.0.0.1 as the
teacher and the built-in ``synthetic`` task — so it works on any laptop with no key, no GPU and
no download. With a config (``jobs/configs/csqa.yaml``) it is the paper's experiment on a real
teacher endpoint and a real cluster.

    teacher sampling (N chains per training question, exactly-once ledger)
      → corpora: SCoTD with N, SCoTD with each N of the ablation, label-only — same questions
      → one student per corpus, same recipe and step budget (Ray Train)
      → evaluation of each: greedy + K votes (Ray Data)
      → <out>/results.json, report.md, vote_curve.png, n_ablation.png

Every stage is resumable on its own — the teacher ledger, the corpora, the training runs
(found by the fingerprint of what they train), the evaluations (reused when the model and
settings are unchanged) — so re-running the same command redoes nothing that is finished.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from scotd import storage
from scotd.config import StageConfig, load_config, validate_section, write_resolved
from scotd.corpus_cli import CorpusConfig, run_corpus
from scotd.evaluation.config import EvalConfig
from scotd.outlock import output_lock
from scotd.sampling.config import SampleConfig
from scotd.teacher.prices import price_for
from scotd.train.config import TINY_RECIPE, DistillConfig

log = logging.getLogger(__name__)

# Fields of the stage sections that the pipeline sets itself, per student.
_DISTILL_OWNED = ("corpus", "out", "name", "label_only")
_EVAL_OWNED = ("model", "task", "split", "limit", "data_dir", "out", "name", "label_only", "progress")
_SAMPLE_OWNED = ("task", "split", "limit", "n", "out", "dry_run", "progress", "data_dir", "seed")


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
    sample: dict[str, Any] = Field(
        default_factory=dict, description="more `scotd sample` fields (limits, pool, ...)"
    )
    distill: dict[str, Any] = Field(
        default_factory=dict, description="`scotd distill` fields; the tiny recipe fills in for student tiny"
    )
    eval: dict[str, Any] = Field(default_factory=dict, description="`scotd eval` fields (votes, engine, ...)")

    @field_validator("n_ablation")
    @classmethod
    def _ablation(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every N in n_ablation must be >= 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _sections(self) -> PipelineConfig:
        """Validate every stage's section now, so a typo fails before any teacher call."""
        if any(k >= self.n for k in self.n_ablation):
            raise ValueError(f"n_ablation {self.n_ablation} must be below n={self.n}")
        for section, owned in (("sample", _SAMPLE_OWNED), ("distill", _DISTILL_OWNED), ("eval", _EVAL_OWNED)):
            clash = sorted(set(getattr(self, section)) & set(owned))
            if clash:
                raise ValueError(
                    f"{', '.join(f'{section}.{k}' for k in clash)}: set by the pipeline itself; use the "
                    "top-level fields (task, n, train_questions, eval_split, eval_questions, out) instead"
                )
        self.distill_config("", "")
        self.eval_config("", "", "", False)
        budget = self.sample.get("budget", {})
        budget = budget if isinstance(budget, dict) else {}  # anything else: validate_section names it
        priced = any(budget.get(k) is not None for k in ("prompt_price_per_1k", "completion_price_per_1k"))
        if self.max_cost_usd is not None and not priced and not price_for(self.teacher_model).known:
            raise ValueError(
                f"max_cost_usd is set but no price is known for teacher_model {self.teacher_model!r}, so "
                "the cap could not bind; set sample.budget.prompt_price_per_1k and "
                "sample.budget.completion_price_per_1k (USD per 1k tokens), or drop max_cost_usd"
            )
        sample = {
            **self.sample,
            "teacher": {
                **self.sample.get("teacher", {}),
                "base_url": "http://127.0.0.1/v1",
                "model": self.teacher_model,
                "api": self.teacher_api,
            },
            "budget": {**budget, "max_cost_usd": self.max_cost_usd},
        }
        validate_section(SampleConfig, sample, "sample")
        return self

    def distill_config(self, corpus: str, out: str, label_only: bool = False) -> DistillConfig:
        base: dict[str, Any] = dict(TINY_RECIPE) if self.distill.get("student", "tiny") == "tiny" else {}
        data = {
            **base,
            "seed": self.seed,
            **self.distill,
            "corpus": corpus,
            "out": out,
            "label_only": label_only,
        }
        return validate_section(DistillConfig, data, "distill")

    def eval_config(self, model: str, out: str, name: str, label_only: bool) -> EvalConfig:
        data = {
            "votes": 30,
            # Two engine actors: on a CPU machine each gets one core (vLLM/torch run one thread per
            # actor), so one engine would leave half of a 2-core laptop idle.
            "num_engines": 2,
            "seed": self.seed,
            **self.eval,
            "model": model,
            "task": self.task,
            "split": self.eval_split,
            "limit": self.eval_questions,
            "data_dir": self.data_dir,
            "out": out,
            "name": name,
            "label_only": label_only,
            "progress": self.progress,
        }
        return validate_section(EvalConfig, data, "eval")


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


@contextlib.contextmanager
def teacher_endpoint(cfg: PipelineConfig) -> Iterator[str]:
    """The configured teacher, or the embedded one for the duration of the teacher stage."""
    if cfg.teacher_base_url:
        yield cfg.teacher_base_url
        return
    import ray

    from scotd.teacher.sim.process import TeacherSimProcess

    # Locally: loopback. On a cluster: this node's cluster address, which the sampler actors on
    # other nodes can reach (on a one-machine cluster that is 127.0.0.1 again).
    host = ray.util.get_node_ip_address() if os.environ.get("RAY_ADDRESS") else "127.0.0.1"
    args = ["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]
    # The embedded teacher needs no provider key: blank it in the server's environment (it would
    # otherwise inherit the driver's), and the sampler sends none (sample_config).
    no_keys = {name: "" for name in dict.fromkeys([cfg.api_key_env, "OPENAI_API_KEY"]) if name}
    with TeacherSimProcess(args, host=host, env=no_keys) as sim:
        log.info("embedded teacher: scotd teacher-sim at %s", sim.base_url)
        yield sim.base_url


def sample_config(cfg: PipelineConfig, base_url: str, out: storage.Location) -> SampleConfig:
    overrides: dict[str, Any] = {
        "task": cfg.task,
        "split": "train",
        "limit": cfg.train_questions,
        "data_dir": cfg.data_dir,
        "seed": cfg.seed,
        "n": cfg.n,
        "out": out.uri + "/teacher",
        "dry_run": cfg.dry_run,
        "progress": cfg.progress,
        **cfg.sample,
        "teacher": {
            **cfg.sample.get("teacher", {}),
            "base_url": base_url,
            "model": cfg.teacher_model,
            "api": cfg.teacher_api,
            # '' = no key: the embedded teacher has no auth, and a provider key sent to it would
            # travel in clear over the cluster network for nothing.
            "api_key_env": cfg.api_key_env if cfg.teacher_base_url else "",
        },
        "budget": {**cfg.sample.get("budget", {}), "max_cost_usd": cfg.max_cost_usd},
    }
    return load_config(SampleConfig, overrides=overrides)


def check_ready(cfg: PipelineConfig) -> None:
    """Fail before any teacher call or cluster time when something the run needs is missing.

    Checks the task's training and evaluation splits and the student (not for a dry run), and
    names every problem at once. Raises ``PipelineNotReady``.
    """
    from scotd.student.factory import StudentUnavailable, resolve_student
    from scotd.tasks import DataUnavailable, UnknownTask, load_task

    problems = []
    for split in dict.fromkeys(["train", cfg.eval_split]):
        try:
            loaded = load_task(cfg.task, split, data_dir=cfg.data_dir, limit=1, seed=cfg.seed)
            if not loaded.examples:
                problems.append(f"{cfg.task}/{split} has no valid examples")
        except (UnknownTask, DataUnavailable, ValueError) as e:
            problems.append(f"data: {e}")
    if not cfg.dry_run:  # a dry run only prices the teacher stage
        try:
            resolve_student(cfg.distill_config("", "").student)
        except StudentUnavailable as e:
            problems.append(f"student: {e}")
    if problems:
        raise PipelineNotReady(
            "the pipeline cannot run here; nothing was requested or trained:\n  - " + "\n  - ".join(problems)
        )


class PipelineNotReady(RuntimeError):
    """Data or the student is missing; raised before any spend."""


class _Clock:
    """Wall time per stage, for results.json and the 15-minute target."""

    def __init__(self) -> None:
        self.started = time.time()
        self.stages: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.time()
        log.info("── %s", name)
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.time() - t, 1)

    def total(self) -> float:
        return round(time.time() - self.started, 1)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) the whole method; returns what ``results.json`` holds.

    Raises ``outlock.OutputLocked`` at once (nothing started) when another run holds ``cfg.out``.
    """
    check_ready(cfg)
    out = storage.location(cfg.out)
    with output_lock(out.uri, "scotd pipeline"):
        return _run_pipeline(cfg, out)


def _run_pipeline(cfg: PipelineConfig, out: storage.Location) -> dict[str, Any]:
    from scotd.pipeline_report import assemble, write_report

    clock = _Clock()
    write_resolved(cfg, out.uri)
    from scotd.ray_runtime import init_ray

    if not cfg.dry_run:  # a dry run only prices the teacher stage: no cluster time
        init_ray(quiet=not cfg.ray_logs)
    with clock.stage("teacher"), teacher_endpoint(cfg) as base_url:
        from scotd.sampling.run import run_sampling

        sampled = run_sampling(sample_config(cfg, base_url, out))
    if cfg.dry_run:
        return {"teacher": sampled.summary}
    if not sampled.summary.get("complete"):
        raise RuntimeError(
            f"the teacher stage is incomplete ({sampled.summary.get('budget_stop') or 'see summary.json'}); "
            "nothing was trained. Re-run the same command to resume: paid answers are kept."
        )
    plan = students(cfg)
    corpora: dict[str, dict[str, Any]] = {}
    with clock.stage("corpora"):
        for s in plan:
            ccfg = load_config(
                CorpusConfig,
                overrides={"input": sampled.out_dir, "out": f"{out.uri}/corpus/{s.key}", **s.corpus},
            )
            corpora[s.key] = run_corpus(ccfg)
    trained = {}
    for s in plan:
        with clock.stage(f"distill:{s.key}"):
            trained[s.key] = _distill(cfg, s, out)
    evaluated = {}
    for s in plan:
        with clock.stage(f"eval:{s.key}"):
            evaluated[s.key] = _evaluate(cfg, s, out, trained[s.key])
    previous = json.loads(storage.read_bytes(out, "results.json") or b"{}").get("run")
    results = assemble(
        cfg, plan, sampled.summary, corpora, trained, evaluated, clock.stages, clock.total(), previous
    )
    write_report(out, results)
    return results


def _distill(cfg: PipelineConfig, s: Student, out: storage.Location) -> dict[str, Any]:
    from scotd.distill import run_distill

    dcfg = cfg.distill_config(f"{out.uri}/corpus/{s.key}", f"{out.uri}/students", label_only=s.label_only)
    with _training_bar(dcfg, s.label, enabled=cfg.progress):
        result = run_distill(dcfg)
    return {**result.summary, "run_dir": result.run_dir, "export_dir": result.export_dir}


@contextlib.contextmanager
def _training_bar(dcfg: DistillConfig, label: str, enabled: bool) -> Iterator[None]:
    """A progress bar for one training run, fed by its ``metrics.jsonl`` (the workers' own log)."""
    if not enabled:
        yield
        return
    import threading

    from tqdm import tqdm

    from scotd.train.config import run_name
    from scotd.train.dataset import corpus_info

    info = corpus_info(dcfg.corpus)
    run = storage.location(dcfg.out).child(run_name(dcfg, info.uri, info.digest))
    stop = threading.Event()

    def refresh(bar: tqdm[Any]) -> None:
        raw = storage.read_bytes(run, "metrics.jsonl") or b""
        steps = [r for r in map(json.loads, raw.decode().splitlines()) if "loss" in r and "event" not in r]
        if steps:
            bar.update(steps[-1]["step"] - bar.n)
            bar.set_postfix(loss=f"{steps[-1]['loss']:.3f}")

    def follow(bar: tqdm[Any]) -> None:
        while not stop.wait(2.0):
            refresh(bar)

    with tqdm(total=dcfg.max_steps, unit="step", desc=f"train {label}") as bar:
        watcher = threading.Thread(target=follow, args=(bar,), daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=10)
            refresh(bar)


EVAL_DONE = "pipeline_eval.json"


def _evaluate(
    cfg: PipelineConfig, s: Student, out: storage.Location, trained: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate one student, or reuse its finished evaluation of the same model with the same settings."""
    from scotd.evaluation.run import run_eval

    ecfg = cfg.eval_config(trained["export_dir"], f"{out.uri}/eval/{s.key}", s.label, s.label_only)
    where = storage.location(ecfg.out_dir())
    identity = {
        "model_fingerprint": trained["fingerprint"],
        "eval": ecfg.model_dump(mode="json", exclude={"progress"}),
    }
    done = storage.read_bytes(where, EVAL_DONE)
    saved = storage.read_bytes(where, "metrics.json")
    if done and saved and json.loads(done) == identity:
        log.info("evaluation of %s is finished already; reusing %s", s.label, where.uri)
        metrics = json.loads(saved)
        return {**metrics, "reused": True}
    result = run_eval(ecfg)
    storage.write_bytes(where, EVAL_DONE, json.dumps(identity).encode())
    return {**result.metrics, "run": result.summary, "reused": False}
