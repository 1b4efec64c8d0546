"""``scotd pipeline``: the whole method in one command.

With no arguments it runs on the embedded default — ``scotd teacher-sim`` on 127.0.0.1 as the
teacher and the built-in ``synthetic`` task — so it works on any laptop with no key, no GPU and
no download. Stages run in order and each is resumable on its own (the teacher ledger, the
corpora), so re-running the same command redoes nothing that is finished.

Stages so far: teacher sampling → corpora (SCoTD N, SCoTD N=1, label-only). Distillation,
evaluation and the paper-style report are added by their stages.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from scotd import storage
from scotd.config import StageConfig, load_config, write_resolved
from scotd.corpus_cli import CorpusConfig, run_corpus
from scotd.sampling.config import SampleConfig
from scotd.sampling.run import run_sampling

log = logging.getLogger(__name__)


class PipelineConfig(StageConfig):
    task: str = Field("synthetic", description="task to distill")
    train_questions: int | None = Field(
        1000, ge=1, description="training questions sampled (None = whole split)"
    )
    n: int = Field(30, ge=1, description="teacher chains per question")
    out: str = Field("outputs/pipeline/demo", description="run directory (path or URI)")
    teacher_base_url: str | None = Field(
        None, description="OpenAI-compatible teacher; unset = start the embedded scotd teacher-sim"
    )
    teacher_model: str = Field("scotd-teacher-sim")
    teacher_api: str = Field("completions", description="completions | chat")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var with the teacher key")
    max_cost_usd: float | None = Field(None, ge=0, description="teacher budget cap")
    dry_run: bool = Field(False, description="only print what the teacher stage would cost")
    progress: bool = True
    sample: dict[str, Any] = Field(default_factory=dict, description="extra SampleConfig fields")


@contextlib.contextmanager
def teacher_endpoint(cfg: PipelineConfig) -> Iterator[str]:
    """The configured teacher, or the embedded one for the duration of the run."""
    if cfg.teacher_base_url:
        yield cfg.teacher_base_url
        return
    from scotd.teacher.sim.process import TeacherSimProcess

    with TeacherSimProcess(["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]) as sim:
        log.info("embedded teacher: scotd teacher-sim at %s", sim.base_url)
        yield sim.base_url


def sample_config(cfg: PipelineConfig, base_url: str, out: storage.Location) -> SampleConfig:
    overrides: dict[str, Any] = {
        "task": cfg.task,
        "split": "train",
        "limit": cfg.train_questions,
        "n": cfg.n,
        "out": out.uri + "/teacher",
        "dry_run": cfg.dry_run,
        "progress": cfg.progress,
        "teacher": {
            "base_url": base_url,
            "model": cfg.teacher_model,
            "api": cfg.teacher_api,
            "api_key_env": cfg.api_key_env,
        },
        "budget": {"max_cost_usd": cfg.max_cost_usd},
        **cfg.sample,
    }
    return load_config(SampleConfig, overrides=overrides)


CORPORA: dict[str, dict[str, Any]] = {
    "scotd": {"mode": "balanced", "variant": "cot"},
    "scotd_n1": {"mode": "balanced", "variant": "cot", "per_example": 1},
    "label_only": {"mode": "balanced", "variant": "label-only"},
}


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    out = storage.location(cfg.out)
    write_resolved(cfg, out.uri)
    results: dict[str, Any] = {}
    with teacher_endpoint(cfg) as base_url:
        sampled = run_sampling(sample_config(cfg, base_url, out))
    results["teacher"] = sampled.summary
    if cfg.dry_run:
        return results
    if not sampled.summary.get("complete"):
        raise RuntimeError(
            f"the teacher stage is incomplete ({sampled.summary.get('budget_stop') or 'see summary.json'}); "
            "re-run the same command to resume"
        )
    results["corpora"] = {}
    for name, spec in CORPORA.items():
        ccfg = load_config(
            CorpusConfig, overrides={"input": sampled.out_dir, "out": f"{out.uri}/corpus/{name}", **spec}
        )
        results["corpora"][name] = run_corpus(ccfg)
    storage.write_bytes(out, "results.json", json.dumps(results, indent=2, default=str).encode())
    return results
