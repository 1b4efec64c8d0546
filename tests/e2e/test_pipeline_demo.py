"""The experiment runner end to end at reduced size: embedded teacher → corpora → 3 students → eval
(test split and the contrast probe) → report with the grid, paired comparisons and figures.

The three students are the demo's (SCoTD with N=30, N=1, label-only), written as an experiment
config, so one run covers the pipeline's stages and the experiment runner. The first run is what a
user does on a cluster: `ray job submit --working-dir <repo> -- python jobs/experiment.py` to the
session's real local Ray head (the repo uploaded as the job's working dir). Then, as CLI
subprocesses, a re-run that must buy nothing, train nothing and reuse every evaluation, and one that
redoes exactly the evaluation whose outputs were removed. (At this size — 80 steps — the
students are too undertrained for SCoTD's win over label-only to hold reliably, so the test checks
structure and reuse, not the win; the full-size demo's numbers are in the README.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.ray_head import LocalHead
from tests.helpers.ray_jobs import logs, submit, wait

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

SMALL = {
    "train_questions": 80,
    "eval_questions": 30,
    "n": 30,
    "students": [
        {"key": "scotd", "label": "SCoTD (N=30)", "x": 30},
        {"key": "scotd_n1", "label": "SCoTD (N=1)", "x": 1, "corpus": {"per_example": 1}},
        {"key": "label_only", "label": "label-only", "label_only": True},
    ],
    "x_label": "N",
    "probe_splits": ["contrast"],
    "distill": {
        "max_steps": 80,
        "checkpoint_every_steps": 40,
        "eval_every_steps": 40,
        "log_every_steps": 20,
    },
    "eval": {"votes": 5, "ks": [1, 3, 5]},
    "progress": False,
}


def _job(head: LocalHead, config: Path, out: Path) -> tuple[str, dict[str, Any]]:
    """The first run as a Ray job; (the job's logs, results.json)."""
    # A local head shares this machine's disk, so plain paths work; a real cluster takes s3:// URIs.
    job_id = submit(head, "jobs/experiment.py", "--config", str(config), "--out", str(out))
    status, took = wait(head, job_id, 780)
    text = logs(head, job_id)
    assert status == "SUCCEEDED", f"{status} after {took:.0f} s; job logs:\n{text[-6000:]}"
    return text, json.loads((out / "results.json").read_text())


def _pipeline(config: Path, out: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "scotd", "experiment", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=780,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, json.loads((out / "results.json").read_text())


def test_demo_pipeline_small_then_resume(ray_head: LocalHead, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "run"
    first_logs, r = _job(ray_head, config, out)

    # Teacher: 80 questions x 30 chains, bought once.
    assert r["teacher"]["questions"] == 80 and r["teacher"]["samples"] == 2400
    assert r["teacher"]["requests_this_run"]["made"] == r["teacher"]["requests_planned"] > 0
    students = r["students"]
    assert list(students) == ["scotd", "scotd_n1", "label_only"]
    assert [s["label"] for s in students.values()] == ["SCoTD (N=30)", "SCoTD (N=1)", "label-only"]
    # Same questions for the N=30 corpus and label-only; N=1 keeps one chain per question.
    assert students["scotd"]["corpus"]["questions_kept"] == students["label_only"]["corpus"]["questions_kept"]
    assert students["scotd_n1"]["corpus"]["kept"] == students["scotd_n1"]["corpus"]["questions_kept"]
    assert students["scotd"]["corpus"]["kept"] > 10 * students["scotd_n1"]["corpus"]["kept"]
    for s in students.values():
        t, e = s["train"], s["eval"]
        assert t["final_step"] == 80 and t["trained_steps_this_run"] == 80, s["label"]
        assert t["train_loss_last"] < t["train_loss_first"] - 1.0, s["label"]
        assert e["questions"] == 30 and e["sampled"]["k_drawn"] == 5
        assert set(e["sampled"]["maj_at_k"]) == {"1", "3", "5"}
        assert 0.0 <= e["greedy"]["accuracy"] <= 1.0 and not s["eval_reused"]
    assert set(r["headline"]["comparisons"]) == {"scotd_vs_scotd_n1", "scotd_vs_label_only"}
    for c in r["headline"]["comparisons"].values():  # paired on the same 30 questions
        assert c["paired"]["questions"] == 30 and 0.0 <= c["paired"]["p_value"] <= 1.0
    assert list(r["grid"]) == ["scotd", "scotd_n1", "label_only"] and r["grid"]["scotd_n1"]["x"] == 1
    for s in students.values():
        assert 0.0 <= s["probes"]["contrast"]["accuracy"] <= 1.0
        assert 1 <= s["eval"]["adaptive"]["mean_votes"] <= 5
    assert r["run"]["wall_s"] >= sum(r["run"]["stage_s"].values()) * 0.99

    report = (out / "report.md").read_text()
    for part in (
        "# SCoTD on `synthetic` (supervised)",
        "## Accuracy (%) with 95% bootstrap intervals",
        "| SCoTD (N=30) |",
        "| SCoTD (N=1) |",
        "| label-only |",
        "SCoTD (N=30) vs label-only:",
        "![vote curve](vote_curve.png)",
        "![N ablation](n_ablation.png)",
        "## Experiment (greedy, %)",
        "## Robustness probes (greedy, %)",
        "## Training",
        "| **total** |",
    ):
        assert part in report, part
    for png in ("vote_curve.png", "n_ablation.png", "experiment.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "| model | greedy | maj@1 | maj@3 | maj@5 |" in first_logs, (
        "the driver's output reaches `ray job logs`"
    )
    assert str(out) in first_logs
    assert (out / "config.yaml").is_file(), "the resolved config is written next to the outputs"
    export = out / students["scotd"]["train"]["export_dir"]  # paths inside the run are relative to it
    assert (export / "config.json").is_file(), "the student's HF export, ready for cluster/serve.yaml"

    # Re-run: nothing bought, nothing trained, every evaluation reused, the same numbers.
    _, again = _pipeline(config, out)
    assert again["teacher"]["requests_this_run"]["made"] == 0
    assert all(s["train"]["trained_steps_this_run"] == 0 for s in again["students"].values())
    assert all(s["eval_reused"] for s in again["students"].values())
    assert again["headline"] == r["headline"]

    # Remove one evaluation: only that one is redone (same model, same seeds → same greedy score).
    shutil.rmtree(out / "eval" / "label_only")
    _, third = _pipeline(config, out)
    assert [s["eval_reused"] for s in third["students"].values()] == [True, True, False]
    assert third["teacher"]["requests_this_run"]["made"] == 0
    assert third["students"]["label_only"]["eval"]["greedy"] == r["students"]["label_only"]["eval"]["greedy"]
