"""Every stage that writes a directory refuses at once when another run holds it (before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scotd import storage
from scotd.artifacts import TrainingSet
from scotd.config import load_config
from scotd.corpus.config import CorpusConfig
from scotd.corpus.demo import write_demo_corpus
from scotd.corpus.run import run_corpus
from scotd.distill.config import DistillConfig
from scotd.distill.run import run_distill, student_run
from scotd.eval.config import EvalConfig
from scotd.eval.run import run_eval
from scotd.outlock import OutputLocked, output_lock
from scotd.pipeline.run import PipelineConfig, run_pipeline


def test_corpus_eval_and_pipeline_refuse_a_held_directory(tmp_path: Path) -> None:
    ccfg = load_config(CorpusConfig, overrides={"input": str(tmp_path / "none"), "out": str(tmp_path / "c")})
    ecfg = load_config(EvalConfig, overrides={"model": str(tmp_path / "m"), "out": str(tmp_path / "e")})
    pcfg = load_config(PipelineConfig, overrides={"out": str(tmp_path / "p")})
    for out, run in ((ccfg.out_dir(), lambda: run_corpus(ccfg)), (ecfg.out_dir(), lambda: run_eval(ecfg))):
        with output_lock(out, "the first run"), pytest.raises(OutputLocked, match="in use by the first run"):
            run()
    with output_lock(str(tmp_path / "p"), "scotd pipeline"), pytest.raises(OutputLocked, match="pid"):
        run_pipeline(pcfg)
    assert not (tmp_path / "p" / "teacher").exists()  # nothing started: no teacher, no Ray


def test_distill_locks_its_run_directory_only(tmp_path: Path) -> None:
    corpus = write_demo_corpus(tmp_path / "corpus", questions=4, per_question=2)
    cfg = load_config(DistillConfig, overrides={"corpus": str(corpus), "out": str(tmp_path / "runs")})
    run_dir = storage.location(student_run(cfg, TrainingSet.locate(cfg.corpus)).uri)
    with output_lock(run_dir.uri, "scotd distill"), pytest.raises(OutputLocked, match="scotd distill"):
        run_distill(cfg)
    assert not storage.exists(run_dir, "config.yaml")  # refused before writing anything
