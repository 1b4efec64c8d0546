"""The stage artifacts: locate() finds and validates outputs, and reads files from older versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scotd import storage
from scotd.artifacts import (
    ArtifactMissing,
    CorpusSummary,
    DistillSummary,
    Evaluation,
    SampleSummary,
    StudentRun,
    TeacherSamples,
    TrainingSet,
)
from scotd.corpus.demo import write_demo_corpus

PRE14 = Path(__file__).resolve().parents[1] / "fixtures" / "pre14"


@pytest.mark.parametrize(
    ("name", "summary"),
    [
        ("sample_summary.json", SampleSummary),
        ("corpus_stats.json", CorpusSummary),
        ("distill_summary.json", DistillSummary),
    ],
)
def test_summaries_from_before_the_redesign_round_trip_exactly(name: str, summary: type) -> None:
    old = json.loads((PRE14 / name).read_text())
    now = summary.from_dict(old).to_dict()
    # Every key kept, with its value, in its place; newer versions only add keys after them.
    assert list(now)[: len(old)] == list(old) and {k: now[k] for k in old} == old


def test_an_evaluation_from_before_the_redesign_is_read_whole(tmp_path: Path) -> None:
    shutil.copytree(PRE14 / "eval", tmp_path / "eval")
    found = Evaluation.locate(str(tmp_path / "eval"))
    assert found.as_result() == json.loads((PRE14 / "eval" / Evaluation.METRICS).read_text())
    assert found.identity() == json.loads((PRE14 / "eval" / Evaluation.IDENTITY).read_text())


def test_locate_names_the_command_that_makes_a_missing_artifact(tmp_path: Path) -> None:
    for artifact, command in (
        (TeacherSamples, "scotd sample"),
        (TrainingSet, "scotd corpus"),
        (StudentRun, "scotd distill"),
        (Evaluation, "scotd eval"),
    ):
        with pytest.raises(ArtifactMissing, match=command):
            artifact.locate(str(tmp_path / "nothing"))


def test_a_training_set_knows_how_it_was_built_from_the_file_alone(tmp_path: Path) -> None:
    out = write_demo_corpus(tmp_path / "c", questions=3, per_question=2, mode="correct")
    by_dir, by_file = TrainingSet.locate(str(out)), TrainingSet.locate(str(out / TrainingSet.TRAIN))
    assert by_dir.ref() == by_file.ref()
    assert (by_dir.mode, by_dir.variant, by_dir.uri) == ("correct", "cot", storage.location(str(out)).uri)
    assert by_dir.rows > 0 and len(by_dir.digest) == 16
    (out / TrainingSet.TRAIN).write_bytes((out / TrainingSet.TRAIN).read_bytes())  # same bytes
    assert TrainingSet.locate(str(out)).digest == by_dir.digest


def test_a_training_run_from_before_keeps_its_name_so_it_resumes() -> None:
    """New DistillConfig fields at their defaults leave the fingerprint (and so the run directory) as it was."""
    import yaml

    from scotd.distill.config import DistillConfig, run_fingerprint, run_name

    cfg = DistillConfig.model_validate(yaml.safe_load((PRE14 / "distill_config.yaml").read_text()))
    old = json.loads((PRE14 / "distill_summary.json").read_text())
    corpus = old["corpus"]
    assert run_fingerprint(cfg, corpus["uri"], corpus["digest"]) == old["fingerprint"]
    assert run_name(cfg, corpus["uri"], corpus["digest"]) == old["run_name"]
