"""``DistillConfig``: everything ``scotd distill`` needs, validated before any cluster time is spent.

Defaults are the paper's (Adam lr 2e-5, eps 1e-5, 500 warm-up steps then linear decay, clip 0.5,
batch 32, 20,000 steps). ``jobs/configs/distill_synthetic.yaml`` holds the tiny-student preset
that the synthetic demo needs (lr 1e-3, cosine, 800 steps; shared/docs/synthetic-task.md).

Fields split in two: those that define WHAT is trained (they make up the run name's hash, so
changing one starts a new run) and those that say HOW or WHERE (workers, strategy, micro-batch,
checkpoint cadence, output root) — change those freely and re-running resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import Field, model_validator

from scotd.config import ConfigSection, StageConfig
from scotd.student.tiny import TinySpec


class FaultInjection(ConfigSection):
    """Chaos drill: SIGKILL one worker once, to prove a run survives it (used by the tests)."""

    kill_rank: int | None = Field(None, ge=0, description="rank whose process kills itself")
    kill_at_step: int | None = Field(
        None, ge=1, description="...after finishing this step, only in an attempt that started from scratch"
    )


class DistillConfig(StageConfig):
    # What is trained (part of the run name's hash).
    corpus: str = Field(
        "outputs/corpus/synthetic-train-balanced",
        description="`scotd corpus` output dir (or its train.parquet)",
    )
    student: str = Field("tiny", description="tiny | hub id (facebook/opt-1.3b) | local dir | s3:// URI")
    label_only: bool = Field(False, description="train the label-only baseline on the same questions")
    target_order: Literal["rationale-first", "answer-first"] = Field(
        "rationale-first",
        description="the target's layout: the rationale then the answer (the paper), or the answer first",
    )
    seed: int = 0
    max_length: int = Field(512, ge=8, description="tokens per sequence (prompt + target + EOS)")
    append_eos: bool = Field(True, description="end every target with the tokenizer's EOS token")
    val_fraction: float = Field(
        0.05, ge=0, lt=1, description="share of questions held out for validation loss"
    )
    val_max_questions: int = Field(256, ge=0, description="cap on held-out questions")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam (paper) or adamw (decoupled decay)")
    lr: float = Field(2e-5, gt=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_eps: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="after warm-up")
    warmup_steps: int = Field(500, ge=0)
    max_steps: int = Field(20000, ge=1)
    batch_size: int = Field(32, ge=1, description="sequences per optimiser step, all workers together")
    grad_clip: float = Field(0.5, ge=0, description="max global grad norm (0 = no clipping)")
    length_grouping_steps: int = Field(
        0, ge=0, description="sort each window of this many steps' samples by length (0 = off): less padding"
    )
    tiny: TinySpec = TinySpec(tokenizer="bpe")  # the class default, "word", suits only the synthetic task

    # How and where (not in the hash: change and re-run to resume the same run).
    out: str = Field("outputs/distill", description="root dir or URI; the run lives in <out>/<name>/")
    name: str | None = Field(
        None, description="run name (default: <student>-<corpus>-<hash of what is trained>)"
    )
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0, description="Ray CPUs per worker (fractional is fine)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict,
        description="more Ray resources per worker, e.g. {accelerator: 1}: workers land only on node types "
        "that have them",
    )
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads per worker (default: Ray's)")
    strategy: Literal["fsdp", "ddp"] = Field("fsdp", description="fsdp = FSDP2 fully_shard per decoder layer")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    activation_checkpointing: bool = False
    micro_batch_size: int | None = Field(
        None, ge=1, description="sequences per forward on one worker (default: batch_size / num_workers)"
    )
    pad_to_multiple_of: int | None = Field(None, ge=1, description="round padded lengths up (8 on GPUs)")
    checkpoint_every_steps: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(3, ge=0, description="worker-group restarts from the last checkpoint")
    log_every_steps: int = Field(10, ge=1)
    eval_every_steps: int = Field(500, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    peak_tflops: float | None = Field(
        None, gt=0, description="GPU peak for MFU (default: a table by GPU name)"
    )
    fault: FaultInjection = FaultInjection()

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"batch_size {self.batch_size} must be divisible by num_workers {self.num_workers}: every worker "
                "takes an equal share of each global batch"
            )
        if self.tiny.hidden_size % self.tiny.num_heads:
            raise ValueError("tiny.hidden_size must be divisible by tiny.num_heads")
        if self.fault.kill_at_step is not None and self.fault.kill_rank is None:
            raise ValueError("fault.kill_at_step needs fault.kill_rank")
        if self.fault.kill_rank is not None and self.fault.kill_rank >= self.num_workers:
            raise ValueError(f"fault.kill_rank {self.fault.kill_rank} >= num_workers {self.num_workers}")
        return self

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers

    @property
    def micro_batch(self) -> int:
        return min(self.micro_batch_size or self.per_worker_batch, self.per_worker_batch)

    def bf16(self, on_gpu: bool) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and on_gpu)


# Fields that do not change what is trained; everything else is hashed into the run name.
OPERATIONAL_FIELDS = frozenset(
    {
        "out",
        "name",
        "num_workers",
        "use_gpu",
        "cpus_per_worker",
        "resources_per_worker",
        "torch_threads",
        "strategy",
        "precision",
        "activation_checkpointing",
        "micro_batch_size",
        "pad_to_multiple_of",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "max_failures",
        "log_every_steps",
        "eval_every_steps",
        "eval_batch_size",
        "peak_tflops",
        "fault",
    }
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def run_fingerprint(cfg: DistillConfig, corpus_uri: str, corpus_digest: str = "") -> str:
    """Hash of what is trained: the recipe, and the corpus by location AND content; 10 hex digits.

    The content digest makes a corpus rebuilt in place (say with another ``--per-example``) a new
    run instead of a "resume" of the old one.
    """
    identity = cfg.model_dump(mode="json", exclude=set(OPERATIONAL_FIELDS))
    identity["corpus"] = corpus_uri
    identity["corpus_digest"] = corpus_digest
    if cfg.student != "tiny":
        identity.pop("tiny")
    if cfg.target_order == "rationale-first":  # the default since before the field: old runs keep their names
        identity.pop("target_order")
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def run_name(cfg: DistillConfig, corpus_uri: str, corpus_digest: str = "") -> str:
    """``<student>-<corpus dir>[-label-only]-<fingerprint>``, or ``cfg.name`` when given."""
    if cfg.name:
        return _slug(cfg.name)
    corpus = corpus_uri.rstrip("/")
    if corpus.endswith(".parquet"):
        corpus = corpus.rsplit("/", 1)[0]
    student = cfg.student.rstrip("/").rsplit("/", 1)[-1]
    parts = [_slug(student), _slug(corpus.rsplit("/", 1)[-1])]
    if cfg.label_only:
        parts.append("label-only")
    parts.append(run_fingerprint(cfg, corpus_uri, corpus_digest))
    return "-".join(parts)


# The tiny-student recipe for the synthetic task (shared/docs/synthetic-task.md): a 1 M-parameter
# student trained from scratch needs a high LR, decoupled weight decay, cosine decay and >= 800
# steps. `scotd pipeline` puts it under the user's `distill:` section when the student is `tiny`;
# jobs/configs/distill_synthetic.yaml is the same recipe for `scotd distill` (a test keeps them equal).
TINY_RECIPE: dict[str, object] = {
    "student": "tiny",
    "tiny": {"tokenizer": "word", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "ffn_size": 512},
    "optimizer": "adamw",
    "lr": 1.0e-3,
    "adam_eps": 1.0e-8,
    "weight_decay": 0.1,
    "schedule": "cosine",
    "warmup_steps": 40,
    "max_steps": 800,
    "batch_size": 32,
    "grad_clip": 1.0,
    "max_length": 256,
    "length_grouping_steps": 16,
    "val_fraction": 0.05,
    # Two 1-thread DDP workers measured fastest on a 2-core machine (benchmarks/distill_throughput.py).
    "num_workers": 2,
    "cpus_per_worker": 1,
    "torch_threads": 1,
    "strategy": "ddp",
    "checkpoint_every_steps": 400,
    "eval_every_steps": 400,
    "log_every_steps": 20,
}
