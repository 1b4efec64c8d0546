"""``scotd status DIR``: each kind of run directory, live, finished, failed, torn, empty and missing.

The directories are built with the stages' own writers (artifact classes, ``Ledger``,
``write_resolved``, ``storage``), so a renamed file or key breaks these tests, not users' screens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from scotd import storage
from scotd.artifacts import (
    SAMPLE_SCHEMA,
    DistillSummary,
    EvalSummary,
    Evaluation,
    PipelineRun,
    SampleSummary,
    StudentRun,
    TeacherSamples,
    TrainingSet,
)
from scotd.config import load_config, write_resolved
from scotd.distill.config import DistillConfig
from scotd.eval.config import EvalConfig
from scotd.outlock import LOCK_FILE, output_lock
from scotd.pipeline.config import PipelineConfig
from scotd.sample.config import SampleConfig
from scotd.status import cli
from scotd.status.read import read_status
from scotd.status.render import render
from scotd.teacher.ledger import BATCHES, Ledger
from tests.conftest import REPO_ROOT

NOW = time.time()


def _labels(text: str) -> dict[str, str]:
    """The first line of each label (``state``, ``progress``, ...), its text stripped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        out.setdefault(label.strip(), rest.strip())
    return out


def _record(i: int, cost: float = 0.01) -> dict[str, Any]:
    return {"raw_body": json.dumps({"choices": [{"text": f"answer {i}"}]}), "cost_usd": cost, "usage": {}}


def make_sample(
    out: Path, answered: int, summary: bool, complete: bool = True, **summary_fields: Any
) -> Path:
    """A teacher run of 2 questions x 2 requests (n=4, max_n=2), ``answered`` of them in the ledger."""
    cfg = load_config(
        SampleConfig,
        overrides={
            "out": str(out),
            "limit": 2,
            "n": 4,
            "teacher": {"max_n": 2},
            "budget": {"max_cost_usd": 5},
        },
    )
    write_resolved(cfg, str(out))
    samples = TeacherSamples(storage.location(str(out)).uri)
    ledger = Ledger(samples.ledger_uri)
    for i in range(answered):
        ledger.put(f"{i:02d}" + "k" * 62, _record(i))
    if summary:
        fields: dict[str, Any] = {
            "requests_planned": 4,
            "requests_in_ledger": answered,
            "samples": 8 * answered,
            "teacher_accuracy": 0.625,
            "cost_usd": {"total": 0.01 * answered, "this_run": 0.0},
            "complete": complete,
            **summary_fields,
        }
        errors = [{"kind": "input_row", "source": "train.jsonl", "line": 7, "reason": "no answer"}]
        samples.write(pa.Table.from_pylist([], schema=SAMPLE_SCHEMA), SampleSummary(**fields), errors)
    return out


def make_distill(run: Path, steps: int, max_steps: int = 100, finished: bool = False) -> Path:
    """A training run logged every 10 steps (one per second), a checkpoint every 50."""
    write_resolved(load_config(DistillConfig, overrides={"corpus": "c", "max_steps": max_steps}), str(run))
    loc = storage.location(str(run))
    t0 = NOW - steps / 10
    rows = [
        {"step": s, "loss": 2.0 / s, "steps_per_s": 12.5, "time": t0 + s / 10}
        for s in range(10, steps + 1, 10)
    ]
    storage.write_bytes(loc, StudentRun.METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())
    for s in range(50, steps + 1, 50):
        state = {"step": s, "samples_seen": 8 * s, "fingerprint": "f" * 16}
        storage.write_bytes(loc, f"checkpoint_{s:06d}/{StudentRun.TRAINER_STATE}", json.dumps(state).encode())
    if finished:
        storage.write_bytes(
            loc.child(StudentRun.EXPORT), StudentRun.EXPORT_MARKER, json.dumps({"step": steps}).encode()
        )
        summary = DistillSummary(
            status="finished",
            final_step=steps,
            train_loss_first=0.2,
            train_loss_last=2.0 / steps,
            fingerprint="f",
        )
        StudentRun(loc.uri).write_summary(summary)
    return run


def make_eval(out: Path, accuracy: float) -> Path:
    write_resolved(load_config(EvalConfig, overrides={"model": "m", "limit": 50}), str(out))
    metrics = {"questions": 50, "greedy": {"accuracy": accuracy, "ci95": [accuracy - 0.1, accuracy + 0.1]}}
    Evaluation(storage.location(str(out)).uri).write_metrics(metrics, EvalSummary(name="m"))
    return out


def test_a_live_sample_run_is_running_and_names_its_holder(tmp_path: Path) -> None:
    out = make_sample(tmp_path / "teacher", answered=0, summary=False)
    with output_lock(str(out), "scotd sample synthetic/train"):
        Ledger(TeacherSamples(str(out)).ledger_uri).put("ab" * 32, _record(0))  # bought by this run
        status = read_status(str(out), now=time.time() + 1)
        text = render(status)
    assert (status.kind, status.state) == ("sample", "running")
    assert status.holder is not None and status.holder.pid == os.getpid()
    lines = _labels(text)
    assert lines["state"].startswith("running: scotd sample synthetic/train (pid")
    assert lines["progress"].startswith("1/~4 requests answered (25%)")
    assert lines["spend"] == "$0.01 of $5.00 cap"  # summed from the ledger while the run is live
    assert lines["eta"] != "-"
    assert read_status(str(out)).state == "incomplete"  # released


def test_a_finished_sample_run(tmp_path: Path) -> None:
    out = make_sample(tmp_path / "teacher", answered=4, summary=True)
    status = read_status(str(out))
    lines = _labels(render(status))
    assert (status.kind, status.state, status.holder) == ("sample", "finished", None)
    assert lines["progress"].startswith("4/4 requests answered (100%); 32 chains, teacher accuracy 62.5%")
    assert lines["spend"] == "$0.04 of $5.00 cap"
    assert lines["eta"] == "-"
    assert lines["last error"].startswith("input_row: train.jsonl:7: no answer")
    assert not (out / LOCK_FILE).exists()  # a status never creates the lock file


def test_batches_and_their_phases(tmp_path: Path) -> None:
    out = make_sample(tmp_path / "teacher", answered=2, summary=False)
    root = storage.location(str(out / TeacherSamples.LEDGER / BATCHES))
    for i, phase in enumerate(["ended", "created", "created"]):
        storage.write_bytes(
            root, f"b{i}.json", json.dumps({"id": f"b{i}", "keys": [], "phase": phase}).encode()
        )
    assert "batches: 3 (created 2, ended 1)" in read_status(str(out)).progress


def test_a_failed_teacher_run_says_why(tmp_path: Path) -> None:
    out = make_sample(
        tmp_path / "teacher", answered=2, summary=True, complete=False, budget_stop="max_cost_usd"
    )
    status = read_status(str(out))
    assert status.state == "failed"
    assert _labels(render(status))["last error"] == "budget stop: max_cost_usd"


def test_a_killed_run_is_incomplete_and_names_the_dead_holder(tmp_path: Path) -> None:
    out = make_sample(tmp_path / "teacher", answered=2, summary=False)
    holder = {"host": "h", "pid": 999999, "command": "scotd sample", "since": NOW - 60}
    (out / LOCK_FILE).write_text(json.dumps(holder))  # what a kill -9 leaves: a name, no flock
    status = read_status(str(out))
    assert status.state == "incomplete"
    assert status.holder is not None and not status.holder.live
    assert "last held by scotd sample (pid 999999 on h" in render(status)


def test_a_live_distill_run(tmp_path: Path) -> None:
    run = make_distill(tmp_path / "runs" / "tiny-x", steps=60)
    with output_lock(str(run), "scotd distill tiny-x"):
        status = read_status(str(run), now=NOW)
    assert (status.kind, status.state) == ("distill", "running")
    assert status.facts["step"] == 60 and status.facts["max_steps"] == 100
    assert status.progress.startswith("step 60/100 (60%), loss 0.0333, 12.50 steps/s, checkpoint")
    assert "(step 50)" in status.progress
    assert status.eta_s == pytest.approx(4.0, abs=0.5)  # 40 steps at 10 steps/s (the wall rate)


def test_a_finished_distill_run(tmp_path: Path) -> None:
    run = make_distill(tmp_path / "runs" / "tiny-x", steps=100, finished=True)
    status = read_status(str(run))
    lines = _labels(render(status))
    assert (status.kind, status.state) == ("distill", "finished")
    assert lines["progress"] == "step 100/100, loss 0.200 → 0.020, exported at step 100"
    assert (lines["spend"], lines["eta"], lines["last error"]) == ("-", "-", "-")


def test_a_torn_summary_is_a_question_mark_not_a_crash(tmp_path: Path) -> None:
    run = make_distill(tmp_path / "runs" / "tiny-x", steps=100, finished=True)
    (run / StudentRun.SUMMARY).write_bytes(b'{"status": "fini')
    (run / StudentRun.METRICS).write_bytes(b'{"step": 10, "loss": 1.0, "time": 1}\n{"step": 2')
    status = read_status(str(run))
    assert status.state == "incomplete"
    assert any("summary.json: unreadable" in n for n in status.notes)
    assert any("metrics.jsonl: 1 unreadable line" in n for n in status.notes)
    assert "note:" in render(status)


def test_an_empty_directory_and_a_missing_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.run(argparse.Namespace(path=str(tmp_path / "empty"), json=False)) == 0
    lines = _labels(capsys.readouterr().out)
    assert lines["kind"].startswith("empty") and lines["state"] == "empty"
    assert cli.run(argparse.Namespace(path=str(tmp_path / "nope"), json=True)) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["state"] == "missing"
    assert "no such directory" in captured.err


def test_an_object_store_lease(tmp_path: Path) -> None:
    """A directory that is not local is held by a lease object until it expires."""
    out = make_sample(tmp_path / "teacher", answered=1, summary=False)
    now = time.time()  # leases are judged by the clock (NOW is module-import time, minutes ago in a full run)
    loc = storage.Location(
        pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "teacher", "s3://b/teacher"
    )
    lease = {
        "host": "elsewhere",
        "pid": 7,
        "command": "scotd sample",
        "since": now - 5,
        "expires_at": now + 60,
    }
    (out / LOCK_FILE).write_text(json.dumps(lease))
    assert read_status(loc).state == "running"
    (out / LOCK_FILE).write_text(json.dumps({**lease, "expires_at": now - 1}))
    assert read_status(loc).state == "incomplete"


def make_pipeline(out: Path) -> Path:
    """A finished default pipeline (teacher, SCoTD and label-only), its results.json as the report
    has it."""
    cfg = load_config(PipelineConfig, overrides={"out": str(out), "n_ablation": [], "max_cost_usd": None})
    write_resolved(cfg, str(out))
    make_sample(out / PipelineRun.TEACHER, answered=4, summary=True)
    results: dict[str, Any] = {"students": {}, "headline": {"metric": "greedy", "comparisons": {}}}
    for key, label, acc in (("scotd", "SCoTD (N=30)", 0.7), ("label_only", "label-only", 0.4)):
        corpus = storage.location(str(out / PipelineRun.CORPORA / key))
        TrainingSet.write(corpus, [{"example_id": "q1"}], "balanced", "cot")
        storage.write_bytes(corpus, TrainingSet.STATS, json.dumps({"kept": 1, "mode": "balanced"}).encode())
        dcfg = cfg.distill_config(corpus.uri, str(out / PipelineRun.STUDENTS), key == "label_only")
        run = make_distill(out / PipelineRun.STUDENTS / f"tiny-{key}", steps=100, finished=True)
        write_resolved(dcfg.model_copy(update={"max_steps": 100}), str(run))
        metrics = json.loads((make_eval(out / PipelineRun.EVALS / key, acc) / Evaluation.METRICS).read_text())
        results["students"][key] = {"label": label, "eval": metrics}
    results["headline"]["comparisons"]["scotd_vs_label_only"] = {
        "diff_points": 30.0,
        "intervals_separated": True,
    }
    storage.write_bytes(storage.location(str(out)), PipelineRun.RESULTS, json.dumps(results).encode())
    return out


def test_a_finished_pipeline_lists_its_stages_and_results(tmp_path: Path) -> None:
    out = make_pipeline(tmp_path / "p")
    status = read_status(str(out))
    text = render(status)
    assert (status.kind, status.state) == ("pipeline", "finished")
    assert status.progress == "teacher finished; corpora 2/2; trained 2/2; evaluated 2/2"
    students = [line for line in text.splitlines() if line.startswith("student:")]
    assert len(students) == 2
    assert (
        "SCoTD (N=30): corpus finished, train 100/100 (finished), eval greedy 70.0% (finished)" in students[0]
    )
    assert any("SCoTD (N=30) vs label-only: +30.0 points (greedy)" in line for line in text.splitlines())
    assert _labels(text)["spend"] == "$0.04 (no cap)"


def test_a_live_pipeline_shows_the_stage_at_work(tmp_path: Path) -> None:
    out = make_pipeline(tmp_path / "p")
    (out / PipelineRun.RESULTS).unlink()
    for key in ("scotd", "label_only"):
        (out / PipelineRun.EVALS / key / Evaluation.METRICS).unlink()
    run = out / PipelineRun.STUDENTS / "tiny-label_only"
    (run / StudentRun.SUMMARY).unlink()
    resolved = (run / "config.yaml").read_bytes()
    make_distill(run, steps=60)  # at step 60 of 100
    (run / "config.yaml").write_bytes(resolved)
    with output_lock(str(out), "scotd pipeline"), output_lock(str(run), "scotd distill tiny-label_only"):
        status = read_status(str(out), now=NOW)
    assert (status.kind, status.state) == ("pipeline", "running")
    assert status.progress == "teacher finished; corpora 2/2; trained 1/2; evaluated 0/2"
    states = {st.name: st.state for st in status.stages}
    assert states == {"teacher": "finished", "scotd": "pending", "label_only": "running"}  # scotd: its eval
    assert status.eta_of == "student label_only: distill" and status.eta_s == pytest.approx(4.0, abs=0.5)


def test_the_real_cli_entry(tmp_path: Path) -> None:
    out = make_distill(tmp_path / "runs" / "tiny-x", steps=100, finished=True)
    done = subprocess.run(
        [sys.executable, "-m", "scotd", "status", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    lines = _labels(done.stdout)
    assert lines["kind"] == f"distill  {out}"
    assert lines["state"] == "finished"
