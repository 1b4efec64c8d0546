"""The pipeline's report from stage results alone: headline comparisons, targets, paper columns, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scotd.artifacts import (
    CorpusSummary,
    DistillSummary,
    EvalSummary,
    Evaluation,
    PipelineRun,
    SampleSummary,
    StudentRun,
    TrainingSet,
)
from scotd.pipeline.config import Outcome
from scotd.pipeline.report import (
    _computed_times,
    assemble,
    compare,
    grid_section,
    headline_lines,
    rebuild_report,
    relative_to_run,
    report_markdown,
    write_report,
)
from scotd.pipeline.run import PipelineConfig, students


def _acc(a: float, half: float = 0.05) -> dict[str, Any]:
    return {"accuracy": a, "ci95": [round(a - half, 4), round(a + half, 4)]}


def _metrics(greedy: float, voted: float) -> dict[str, Any]:
    return {
        "questions": 300,
        "labeled_questions": 300,
        "greedy": {**_acc(greedy), "unparseable_rate": 0.0},
        "sampled": {
            "k_drawn": 30,
            "maj_at_k": {"1": _acc(voted - 0.1), "30": _acc(voted)},
            "any_correct": _acc(0.99),
            "single_sample_accuracy": 0.6,
            "unparseable_rate": 0.05,
            "mean_vote_share": 0.7,
        },
        "run": {"temperature": 0.7},
    }


def _results(
    task: str,
    setting: str,
    scores: dict[str, tuple[float, float]],
    correct: dict[str, dict[str, bool]] | None = None,
    probes: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    cfg = PipelineConfig(task=task, setting=setting, n_ablation=[1])
    plan = students(cfg)
    corpus = {"kept": 900, "questions_kept": 100}
    train = {
        "final_step": 800,
        "train_loss_first": 5.0,
        "train_loss_last": 0.2,
        "val_loss_last": 0.3,
        "wall_s": 200.0,
    }
    teacher = {
        "teacher_model": "sim",
        "questions": 100,
        "samples": 3000,
        "teacher_accuracy": 0.7,
        "parse_rate": 0.9,
    }
    outcomes = []
    for s in plan:
        metrics = _metrics(*scores[s.key])
        summary = EvalSummary.from_dict(metrics.pop("run"))
        outcomes.append(
            Outcome(
                s,
                TrainingSet("c", "c/train.parquet", "balanced", "cot", 900, "0", CorpusSummary(**corpus)),
                StudentRun(f"runs/{s.key}", DistillSummary(**train)),
                Evaluation(f"eval/{s.key}", metrics, summary),
                {
                    split: Evaluation(f"eval/{s.key}@{split}", {"greedy": _acc(acc)}, summary)
                    for split, acc in (probes or {}).get(s.key, {}).items()
                },
            )
        )
    times = {"teacher": 30.0, "distill:scotd": 200.0}
    return assemble(cfg, SampleSummary(**teacher), outcomes, times, 600.0, None, correct)


def test_compare_needs_a_gap_between_the_intervals() -> None:
    assert compare(_acc(0.9), _acc(0.5)) == {"diff_points": 40.0, "intervals_separated": True}
    assert compare(_acc(0.55), _acc(0.5)) == {"diff_points": 5.0, "intervals_separated": False}


def test_demo_targets_on_the_headline_metric() -> None:
    r = _results(
        "synthetic", "supervised", {"scotd": (0.9, 0.93), "scotd_n1": (0.87, 0.6), "label_only": (0.45, 0.4)}
    )
    c = r["headline"]["comparisons"]
    assert r["headline"]["metric"] == "greedy"
    assert c["scotd_vs_label_only"]["target_met"] is True
    # +3 points greedy: below the 5-point target, and the intervals overlap.
    assert c["scotd_vs_scotd_n1"]["diff_points"] == 3.0 and c["scotd_vs_scotd_n1"]["target_met"] is False
    lines = headline_lines(r)
    assert (
        "SCoTD (N=30) vs label-only: +45.0 points (greedy), 95% intervals apart; target ≥ 15 points: met"
        in lines
    )
    assert any("MISSED" in line and "SCoTD (N=1)" in line for line in lines)
    assert r["paper"] is None


def test_few_shot_headline_is_self_consistency_and_real_tasks_sit_beside_the_paper(tmp_path: Path) -> None:
    r = _results(
        "csqa", "few-shot", {"scotd": (0.5, 0.6), "scotd_n1": (0.4, 0.45), "label_only": (0.55, 0.5)}
    )
    assert r["headline"]["metric"] == "maj@30"
    assert "target_met" not in r["headline"]["comparisons"]["scotd_vs_label_only"]
    write_report(PipelineRun(str(tmp_path)), r)
    report = (tmp_path / "report.md").read_text()
    assert "## Beside the paper (few-shot, facebook/opt-1.3b student" in report
    assert "| SCoTD | 60.0 | 64.7 |" in report and "| label-only | 50.0 | 62.7 |" in report
    assert "| 1 | 45.0 | 53.4 |" in report and "| 30 | 60.0 | 64.7 |" in report
    for png in ("vote_curve.png", "n_ablation.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "report.md").unlink()
    assert rebuild_report(str(tmp_path))["headline"] == r["headline"]
    assert (tmp_path / "report.md").read_text() == report


def test_a_rerun_reports_the_time_of_the_run_that_did_the_work() -> None:
    first = _computed_times({"teacher": 30.0, "distill:scotd": 200.0}, 240.0, set(), None)
    assert first["wall_s_computed"] == 240.0 and first["reused_stages"] == []
    again = _computed_times({"teacher": 1.0, "distill:scotd": 2.0}, 10.0, {"teacher", "distill:scotd"}, first)
    assert again["stage_s_computed"] == {"teacher": 30.0, "distill:scotd": 200.0}
    assert again["wall_s_computed"] == 237.0  # 10 s this run - 3 s of checks + 230 s of work
    partial = _computed_times({"teacher": 1.0, "distill:scotd": 150.0}, 160.0, {"teacher"}, first)
    assert partial["stage_s_computed"] == {"teacher": 30.0, "distill:scotd": 150.0}


def test_targets_are_judged_by_the_paired_test_when_predictions_are_given() -> None:
    scores = {"scotd": (0.6, 0.6), "scotd_n1": (0.5, 0.5), "label_only": (0.2, 0.2)}
    qs = [f"q{i}" for i in range(20)]
    correct = {
        "scotd": {q: i < 12 for i, q in enumerate(qs)},  # 60%
        "scotd_n1": {q: i < 10 for i, q in enumerate(qs)},  # 50%: 2 discordant pairs, p = 0.5
        "label_only": {q: i < 4 for i, q in enumerate(qs)},  # 20%: 8 discordant pairs, p = 0.0078
    }
    c = _results("synthetic", "supervised", scores, correct)["headline"]["comparisons"]
    n1, lo = c["scotd_vs_scotd_n1"], c["scotd_vs_label_only"]
    assert n1["paired"]["diff_points"] == 10.0 and n1["paired"]["p_value"] == 0.5
    assert n1["target_met"] is False  # 10 points >= 5, but not significant on 20 paired questions
    assert (
        lo["paired"]["discordant"] == [8, 0]
        and lo["paired"]["p_value"] == 0.0078
        and lo["target_met"] is True
    )


def test_probes_sit_beside_the_test_split(tmp_path: Path) -> None:
    scores = {"scotd": (0.9, 0.9), "scotd_n1": (0.8, 0.8), "label_only": (0.85, 0.8)}
    probes = {k: {"contrast": 0.6 if k == "label_only" else 0.9, "ood": 0.5} for k in scores}
    r = _results("synthetic", "supervised", scores, probes=probes)
    assert r["students"]["label_only"]["probes"]["contrast"]["accuracy"] == 0.6
    write_report(PipelineRun(str(tmp_path)), r)
    report = (tmp_path / "report.md").read_text()
    assert "## Robustness probes (greedy, %)" in report and "| student | test | contrast | ood |" in report
    assert "| label-only | 85.0 [80.0, 90.0] | 60.0 [55.0, 65.0] | 50.0 [45.0, 55.0] |" in report


def test_the_header_names_each_teachers_accuracy_when_students_had_different_teachers() -> None:
    scores = {"scotd": (0.9, 0.9), "scotd_n1": (0.8, 0.8), "label_only": (0.85, 0.8)}
    r = _results("synthetic", "supervised", scores)
    for s in r["students"].values():
        s["corpus"] |= {"input": "out/teacher", "teacher_accuracy": 0.7}
    assert "per-chain accuracy 70.0%, parse rate 90.0%" in report_markdown(r)
    r["students"]["scotd_n1"]["corpus"] |= {"input": "out/teacher-error0.25", "teacher_accuracy": 0.46}
    header = report_markdown(r).splitlines()[2]
    assert (
        "per-chain accuracy by teacher: 70.0% for SCoTD (N=30), label-only; 46.0% for SCoTD (N=1); "
        "the first teacher's parse rate 90.0%" in header
    ), header


def test_paths_inside_the_run_are_written_relative_to_it() -> None:
    run = "s3://bucket/runs/a"
    results = {
        "students": {
            "x": {"train": {"run_dir": f"{run}/students/x", "export_dir": f"{run}/students/x/export"}}
        },
        "corpus": [{"input": f"{run}/teacher", "other": "s3://bucket/runs/ab/teacher"}, run, 3.5],
    }
    assert relative_to_run(results, run) == {
        "students": {"x": {"train": {"run_dir": "students/x", "export_dir": "students/x/export"}}},
        "corpus": [{"input": "teacher", "other": "s3://bucket/runs/ab/teacher"}, ".", 3.5],
    }


def test_seeds_sharing_a_label_keep_a_row_each() -> None:
    scores = {"scotd": (0.9, 0.9), "scotd_n1": (0.8, 0.8), "label_only": (0.85, 0.8)}
    r = _results("synthetic", "supervised", scores)
    r["students"]["scotd_n1"]["label"] = "SCoTD (N=30)"  # as an experiment's seeds of one condition
    report = report_markdown(r)
    assert "| SCoTD (N=30) (scotd) | 90.0 [85.0, 95.0] |" in report
    assert "| SCoTD (N=30) (scotd_n1) | 80.0 [75.0, 85.0] |" in report
    assert "| label-only | 85.0" in report


def test_the_experiment_table_reads_condition_minus_reference() -> None:
    scores = {"scotd": (0.6, 0.6), "scotd_n1": (0.5, 0.5), "label_only": (0.2, 0.2)}
    qs = [f"q{i}" for i in range(20)]
    correct = {k: {q: i < 20 * g for i, q in enumerate(qs)} for k, (g, _) in scores.items()}
    r = _results("synthetic", "supervised", scores, correct)
    r["grid"] = {
        k: {"label": r["students"][k]["label"], "x": None, "corpus": {"kept": 900}, "seeds": {"0": g}, "mean": g,
            "spread": [g, g]}
        for k, (g, _) in scores.items()
    }  # fmt: skip
    table = "\n".join(grid_section(r))
    assert "| − SCoTD (N=30) (points; paired, first seed) |" in table
    assert "| SCoTD (N=30) |  | 900 | 60.0 | 60.0 [60.0, 60.0] | reference |" in table
    assert "| label-only |  | 900 | 20.0 | 20.0 [20.0, 20.0] | -40.0 (p=" in table  # below: negative
