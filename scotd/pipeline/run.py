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
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from scotd import storage
from scotd.artifacts import (
    ArtifactMissing,
    Evaluation,
    PipelineRun,
    SampleSummary,
    StudentRun,
    TeacherSamples,
    TrainingSet,
)
from scotd.config import load_config, write_resolved
from scotd.corpus.config import CorpusConfig
from scotd.corpus.run import run_corpus
from scotd.outlock import output_lock
from scotd.pipeline.config import Outcome, PipelineConfig, Student, students

log = logging.getLogger(__name__)


@contextlib.contextmanager
def teacher_endpoint(cfg: PipelineConfig, error_rate: float | None = None) -> Iterator[str]:
    """The configured teacher, or the embedded one (at ``error_rate`` per step, when given) for the
    duration of the teacher stage."""
    if cfg.teacher_base_url:
        yield cfg.teacher_base_url
        return
    import ray

    from scotd.teacher.sim.process import TeacherSimProcess

    # Locally: loopback. On a cluster: this node's cluster address, which the sampler actors on
    # other nodes can reach (on a one-machine cluster that is 127.0.0.1 again).
    host = ray.util.get_node_ip_address() if os.environ.get("RAY_ADDRESS") else "127.0.0.1"
    args = ["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]
    rate = error_rate if error_rate is not None else cfg.teacher_error_rate
    if rate is not None:
        args += ["--error-rate", str(rate)]
    # The embedded teacher needs no provider key: blank it in the server's environment (it would
    # otherwise inherit the driver's), and the sampler sends none (PipelineConfig.sample_config).
    no_keys = {name: "" for name in dict.fromkeys([cfg.api_key_env, "OPENAI_API_KEY"]) if name}
    with TeacherSimProcess(args, host=host, env=no_keys) as sim:
        log.info("embedded teacher: scotd teacher-sim at %s", sim.base_url)
        yield sim.base_url


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
            resolve_student(cfg.recipe.student)
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
    out = PipelineRun(storage.location(cfg.out).uri)
    with output_lock(out.uri, "scotd pipeline"):
        return _run_pipeline(cfg, out)


def _run_pipeline(cfg: PipelineConfig, out: PipelineRun) -> dict[str, Any]:
    from scotd.eval.metrics import per_question
    from scotd.pipeline.report import assemble, headline_metric, relative_to_run, write_report

    clock = _Clock()
    write_resolved(cfg, out.uri)
    from scotd.ray_runtime import init_ray

    if not cfg.dry_run:  # a dry run only prices the teacher stage: no cluster time
        init_ray(quiet=not cfg.ray_logs)
    plan = students(cfg)
    teachers: dict[str, TeacherSamples] = {}
    for variant in dict.fromkeys(s.teacher for s in plan):
        with clock.stage(f"teacher-{variant}" if variant else "teacher"):
            teachers[variant] = _sample(cfg, out, variant, next(s for s in plan if s.teacher == variant))
    samples = teachers[plan[0].teacher]
    if not isinstance(samples.summary, SampleSummary):  # a dry run: the estimate is the result
        return {"teacher": samples.summary.to_dict() if samples.summary else {}}
    sets: dict[str, TrainingSet] = {}
    with clock.stage("corpora"):
        for s in plan:
            where = out.training_set_uri(s.condition or s.key)
            if where not in {t.uri for t in sets.values()}:  # an experiment's seeds share their corpus
                overrides = {"input": teachers[s.teacher].uri, "out": where, **s.corpus}
                sets[s.key] = run_corpus(load_config(CorpusConfig, overrides=overrides))
            else:
                sets[s.key] = next(t for t in sets.values() if t.uri == where)
    runs: dict[str, StudentRun] = {}
    for s in plan:
        with clock.stage(f"distill:{s.key}"):
            runs[s.key] = _distill(cfg, s, sets[s.key], out)
    outcomes = []
    for s in plan:
        with clock.stage(f"eval:{s.key}"):
            evaluation = _evaluate(cfg, s, runs[s.key], out)
        probes: dict[str, Evaluation] = {}
        for split in cfg.probe_splits:
            with clock.stage(f"eval:{s.key}@{split}"):
                probes[split] = _evaluate(cfg, s, runs[s.key], out, split)
        outcomes.append(Outcome(s, sets[s.key], runs[s.key], evaluation, probes))
    previous = (out.results() or {}).get("run")
    metric, _ = headline_metric(outcomes[0].evaluation.metrics, cfg.setting)
    correct = {o.student.key: per_question(o.evaluation.predictions(), metric) for o in outcomes}
    results = assemble(cfg, samples.summary, outcomes, clock.stages, clock.total(), previous, correct)
    results = relative_to_run(results, out.uri)
    results["run"]["out"] = cfg.out  # as the user gave it
    write_report(out, results)
    return results


def _sample(cfg: PipelineConfig, out: PipelineRun, variant: str, s: Student) -> TeacherSamples:
    """The teacher stage for one teacher (an experiment may compare several); must be complete."""
    from scotd.sample.run import run_sample

    rate = next((x.teacher_error_rate for x in cfg.students if x.key == s.condition), None)
    with teacher_endpoint(cfg, rate) as base_url:
        samples = run_sample(cfg.sample_config(base_url, out.teacher_uri(variant)))
    if isinstance(samples.summary, SampleSummary) and not samples.summary.complete:
        raise RuntimeError(
            f"the teacher stage is incomplete ({samples.summary.budget_stop or 'see its summary.json'}); "
            "nothing was trained. Re-run the same command to resume: paid answers are kept."
        )
    return samples


def _distill(cfg: PipelineConfig, s: Student, training: TrainingSet, out: PipelineRun) -> StudentRun:
    from scotd.distill.run import run_distill, student_run

    dcfg = cfg.distill_config(training.uri, out.students_uri(), s.label_only, s.seed, s.distill)
    with _training_bar(student_run(dcfg, training), dcfg.max_steps, s.label, enabled=cfg.progress):
        return run_distill(dcfg)


@contextlib.contextmanager
def _training_bar(run: StudentRun, max_steps: int, label: str, enabled: bool) -> Iterator[None]:
    """A progress bar for one training run, fed by its metrics log (the workers' own record)."""
    if not enabled:
        yield
        return
    import threading

    from tqdm import tqdm

    stop = threading.Event()

    def refresh(bar: tqdm[Any]) -> None:
        steps = run.step_rows()
        if steps:
            bar.update(steps[-1]["step"] - bar.n)
            bar.set_postfix(loss=f"{steps[-1]['loss']:.3f}")

    def follow(bar: tqdm[Any]) -> None:
        while not stop.wait(2.0):
            refresh(bar)

    with tqdm(total=max_steps, unit="step", desc=f"train {label}") as bar:
        watcher = threading.Thread(target=follow, args=(bar,), daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=10)
            refresh(bar)


def _evaluate(
    cfg: PipelineConfig, s: Student, run: StudentRun, out: PipelineRun, probe: str | None = None
) -> Evaluation:
    """Evaluate one student (on the test split, or a probe), or reuse its finished evaluation of the
    same model with the same settings."""
    from scotd.eval.run import run_eval

    where = out.evaluation_uri(s.key, probe)
    ecfg = cfg.eval_config(run.export_uri, where, s.label, s.label_only, probe, s.seed)
    assert run.summary is not None
    identity = {
        "model_fingerprint": run.summary.fingerprint,
        # where engines run is not what they compute: placement never invalidates an evaluation
        "eval": ecfg.model_dump(mode="json", exclude={"progress", "resources_per_engine"}),
    }
    target = Evaluation(storage.location(ecfg.out_dir()).uri)
    if target.identity() == identity:
        with contextlib.suppress(ArtifactMissing):
            found = Evaluation.locate(target.uri)
            log.info("evaluation of %s is finished already; reusing %s", s.label, target.uri)
            return dataclasses.replace(found, reused=True)
    evaluation = run_eval(ecfg)
    evaluation.write_identity(identity)
    return evaluation
