"""The corpus stage's driver: teacher samples -> filtered training set (``train.parquet``) + statistics."""

from __future__ import annotations

from dataclasses import asdict

from scotd import storage
from scotd.artifacts import CorpusSummary, TeacherSamples, TrainingSet
from scotd.config import write_resolved
from scotd.corpus.config import CorpusConfig
from scotd.outlock import output_lock
from scotd.selection import CorpusSpec, build


def run_corpus(cfg: CorpusConfig) -> TrainingSet:
    """Filter the teacher's samples at ``cfg.input`` into a training set; holds its directory meanwhile."""
    with output_lock(storage.location(cfg.out_dir()).uri, f"scotd corpus {cfg.mode}"):
        return _run_corpus(cfg)


def _run_corpus(cfg: CorpusConfig) -> TrainingSet:
    samples = TeacherSamples.locate(cfg.input)
    spec = CorpusSpec(
        mode=cfg.mode,
        dedup=cfg.dedup,
        near_threshold=cfg.near_threshold,
        per_example=cfg.per_example,
        variant=cfg.variant,
        select=cfg.select,
        seed=cfg.seed,
        embedder=cfg.embedder,
        question_fraction=cfg.question_fraction,
    )
    train, stats = build(samples.rows(), spec)  # raises SubsampleError (a ValueError) before writing
    out = storage.location(cfg.out_dir())
    written = TrainingSet.write(out, train, cfg.mode, cfg.variant)
    summary = CorpusSummary(input=cfg.input, out=out.uri, mode=cfg.mode, variant=cfg.variant, **asdict(stats))
    written = written.write_summary(summary)
    write_resolved(cfg, out.uri)
    return written
