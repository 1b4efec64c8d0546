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
from typing import Any

from scotd import storage
from scotd.config import load_config, write_resolved
from scotd.corpus.config import CorpusConfig
from scotd.corpus.run import run_corpus
from scotd.distill.config import DistillConfig
from scotd.outlock import output_lock
from scotd.pipeline.config import PipelineConfig, Student, students
from scotd.sample.config import SampleConfig

log = logging.getLogger(__name__)


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
    from scotd.pipeline.report import assemble, write_report

    clock = _Clock()
    write_resolved(cfg, out.uri)
    from scotd.ray_runtime import init_ray

    if not cfg.dry_run:  # a dry run only prices the teacher stage: no cluster time
        init_ray(quiet=not cfg.ray_logs)
    with clock.stage("teacher"), teacher_endpoint(cfg) as base_url:
        from scotd.sample.run import run_sampling

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
    from scotd.distill.run import run_distill

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

    from scotd.distill.config import run_name
    from scotd.distill.dataset import corpus_info

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
    from scotd.eval.run import run_eval

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
