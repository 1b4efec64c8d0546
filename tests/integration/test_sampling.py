"""`scotd sample` on a real local Ray cluster against a real `scotd teacher-sim` server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.config import load_config
from scotd.sample.config import SampleConfig
from scotd.sample.run import TeacherAuthError, run_sample
from scotd.teacher.ledger import Ledger
from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

FAST = ["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]


def _cfg(sim: TeacherSimProcess, out: Path, **over: Any) -> SampleConfig:
    base: dict[str, Any] = {
        "task": "synthetic",
        "limit": 12,
        "n": 3,
        "out": str(out),
        "progress": False,
        "teacher": {"base_url": sim.base_url, "timeout_s": 5.0, "backoff_base_s": 0.05, "backoff_max_s": 0.5},
    }
    for k, v in over.items():
        if isinstance(v, dict):
            base[k] = {**base.get(k, {}), **v}
        else:
            base[k] = v
    return load_config(SampleConfig, overrides=base)


def _corpus(out: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(out / "corpus.parquet").to_pylist()
    return sorted(rows, key=lambda r: (r["example_id"], r["sample_index"] or 0))


def test_sample_builds_corpus_and_summary(ray_session: str, tmp_path: Path) -> None:
    with TeacherSimProcess(FAST) as sim:
        result = run_sample(_cfg(sim, tmp_path / "s", teacher={"api": "chat", "max_n": 2}, n=5))
        stats = sim.stats()
    s = result.summary
    # n=5 with max_n=2 -> chunks of 2+2+1 = 3 requests per question
    assert s.requests_planned == 36 and stats["paid_requests"] == 36
    assert s.samples == 60 and s.samples_per_example == {"mean": 5.0, "min": 5, "max": 5}
    rows = _corpus(tmp_path / "s")
    assert len(rows) == 60 and all(r["error"] is None for r in rows)
    assert sorted({r["sample_index"] for r in rows}) == [0, 1, 2, 3, 4]
    assert 0.5 < s.teacher_accuracy < 0.9
    parsed = [r for r in rows if r["pred_label"] is not None]
    assert all(r["correct"] == (r["pred_label"] == r["gold"]) for r in parsed)
    assert all(r["mean_logprob"] is not None and r["mean_logprob"] < 0 for r in rows)
    assert (tmp_path / "s" / "config.yaml").is_file()
    # Re-running buys nothing and rebuilds the same corpus from the ledger.
    with TeacherSimProcess(FAST) as sim2:
        again = run_sample(_cfg(sim2, tmp_path / "s", teacher={"api": "chat", "max_n": 2}, n=5))
        assert sim2.stats()["requests"] == 0
    assert again.summary.requests_this_run["made"] == 0
    assert _corpus(tmp_path / "s") == rows


def test_rate_limits_are_respected_and_used(ray_session: str, tmp_path: Path) -> None:
    """Limits learned from the provider's headers, its windows spent, almost no 429s."""
    with TeacherSimProcess([*FAST, "--rpm", "600", "--window-s", "5"]) as sim:  # 50 a 5 s window
        result = run_sample(_cfg(sim, tmp_path / "r", limit=90, n=1))
        stats = sim.stats()
    s = result.summary
    assert s.complete
    # The provider's window is the limit (its 429s say when a client overfills it), not a pace:
    # 90 requests fit in two windows, ~5 s apart, so the job's rate may exceed 600 a minute.
    assert stats["outcomes"]["429"] <= 0.02 * stats["requests"]
    assert s.limits["rpm"] == 600
    assert s.achieved_rpm >= 0.85 * 600, s.achieved_rpm


def test_faults_are_retried_until_every_example_completes(ray_session: str, tmp_path: Path) -> None:
    # 24% of requests fail one way or another (5xx, hangs past the client's 1 s timeout, drops, bad JSON)
    faults = "--fault-500 0.06 --fault-503 0.05 --fault-drop 0.05 --fault-hang 0.04 --fault-malformed 0.04"
    faults += " --hang-s 4 --seed 3"
    with TeacherSimProcess([*FAST, *faults.split()]) as sim:
        result = run_sample(
            _cfg(sim, tmp_path / "f", limit=40, n=2, teacher={"timeout_s": 1.0, "max_retries": 8})
        )
        stats = sim.stats()
    s = result.summary
    injected = sum(stats["outcomes"][k] for k in ("500", "503", "drop", "hang", "malformed"))
    assert injected >= 0.10 * stats["requests"], stats
    assert s.complete and s.samples == 80
    assert s.requests_this_run["retried"] >= injected - 2  # every fault cost one retry
    assert stats["repeated_paid_requests"] == 0


def test_bad_key_aborts_before_spending(
    ray_session: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sim-secret-value-123"
    with TeacherSimProcess([*FAST, "--api-key-env", "SIM_KEY"], env={"SIM_KEY": secret}) as sim:
        monkeypatch.setenv("TEACHER_KEY", "wrong-key-456")
        start = time.monotonic()
        with pytest.raises(TeacherAuthError) as err:
            run_sample(_cfg(sim, tmp_path / "a", teacher={"api_key_env": "TEACHER_KEY"}))
        assert time.monotonic() - start < 10
        assert "$TEACHER_KEY" in str(err.value) and "wrong-key-456" not in str(err.value)
        assert sim.stats()["paid_requests"] == 0
        monkeypatch.setenv("TEACHER_KEY", secret)
        ok = run_sample(_cfg(sim, tmp_path / "a", teacher={"api_key_env": "TEACHER_KEY"}))
        assert ok.summary.complete
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".jsonl", ".parquet"):
            assert secret.encode() not in path.read_bytes(), path


def test_budget_cap_stops_cleanly_and_resumes(ray_session: str, tmp_path: Path) -> None:
    prices = {"prompt_price_per_1k": 0.01, "completion_price_per_1k": 0.02}
    with TeacherSimProcess(FAST) as sim:
        capped = run_sample(_cfg(sim, tmp_path / "b", limit=20, budget={**prices, "max_cost_usd": 0.05}))
        s = capped.summary
        assert s.budget_stop and not s.complete
        assert 0 < s.cost_usd["total"] <= 0.05
        paid_first = sim.stats()["paid_requests"]
        assert paid_first == s.requests_in_ledger < 20
        resumed = run_sample(_cfg(sim, tmp_path / "b", limit=20, budget={**prices, "max_cost_usd": 10.0}))
        stats = sim.stats()
    assert resumed.summary.complete and resumed.summary.requests_this_run["made"] == 20 - paid_first
    assert stats["paid_requests"] == 20 and stats["repeated_paid_requests"] == 0


def test_dry_run_calls_nothing(ray_session: str, tmp_path: Path) -> None:
    with TeacherSimProcess(FAST) as sim:
        result = run_sample(
            _cfg(
                sim,
                tmp_path / "d",
                dry_run=True,
                budget={"prompt_price_per_1k": 0.01, "completion_price_per_1k": 0.02},
            )
        )
        assert sim.stats()["requests"] == 0
    s = result.summary
    assert s.requests == 12 and s.samples == 36 and s.max_completion_tokens == 12 * 3 * 256
    assert s.max_cost_usd > 0


def test_malformed_input_rows_are_counted(ray_session: str, tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    good = {
        "question": "Tom has 3 apples. He eats 1. How many apples does Tom have now?",
        "choices": ["2", "3", "4"],
        "answer": "a",
    }
    data.write_text(
        json.dumps({"id": "g1", **good})
        + "\n"
        + "{oops\n"
        + json.dumps({"id": "g2", "question": "x", "choices": ["1"]})
        + "\n"
        + json.dumps({"id": "g3", **good})
        + "\n"
    )
    with TeacherSimProcess(FAST) as sim:
        result = run_sample(_cfg(sim, tmp_path / "m", task=f"jsonl:{data}", limit=None))
    s = result.summary
    assert s.questions == 2 and s.input_rows_rejected == {"bad_json": 1, "too_few_choices": 1}
    errors = [json.loads(x) for x in (tmp_path / "m" / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["reason"]) for e in errors] == [(2, "bad_json"), (3, "too_few_choices")]


def _sample_cmd(base_url: str, out: Path, limit: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scotd",
        "sample",
        "--limit",
        str(limit),
        "--n",
        "2",
        "--out",
        str(out),
        "--teacher.base-url",
        base_url,
        "--progress",
        "false",
    ]


def test_kill_driver_mid_run_then_resume_buys_nothing_twice(ray_address: str, tmp_path: Path) -> None:
    limit = 60
    slow = ["--latency-base-ms", "300", "--rpm", "600", "--window-s", "5"]
    with TeacherSimProcess(slow) as sim:
        out = tmp_path / "k"
        proc = subprocess.Popen(
            _sample_cmd(sim.base_url, out, limit), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        ledger = Ledger(str(out / "ledger"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(ledger.keys()) < limit // 3:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        before = ledger.keys()
        assert 0 < len(before) < limit, "the kill should land mid-run"
        paid_before = sim.stats()["paid_requests"]
        done = subprocess.run(
            _sample_cmd(sim.base_url, out, limit), capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stats = sim.stats()
    assert stats["repeated_paid_requests"] == 0, stats
    assert stats["paid_requests"] == limit
    assert paid_before >= len(before)
    with TeacherSimProcess(slow[:2]) as ref_sim:
        ref = subprocess.run(
            _sample_cmd(ref_sim.base_url, tmp_path / "ref", limit),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert ref.returncode == 0, ref.stderr[-3000:]
    strip = ("request_key",)
    resumed_rows = [{k: v for k, v in r.items() if k not in strip} for r in _corpus(out)]
    ref_rows = [{k: v for k, v in r.items() if k not in strip} for r in _corpus(tmp_path / "ref")]
    assert resumed_rows == ref_rows


def test_kill_a_sampler_worker_mid_run(ray_session: str, tmp_path: Path) -> None:
    import psutil

    with TeacherSimProcess(["--latency-base-ms", "300", "--rpm", "600", "--window-s", "5"]) as sim:
        cfg = _cfg(sim, tmp_path / "w", limit=60, n=2)
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.setdefault("result", run_sample(cfg)), daemon=True)
        thread.start()
        ledger = Ledger(str(tmp_path / "w" / "ledger"))
        deadline = time.monotonic() + 120
        killed = 0
        while time.monotonic() < deadline and not killed:
            if len(ledger.keys()) >= 15:
                # Ray names worker processes after what they run: "ray::MapWorker(MapBatches(TeacherSampler))".
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "TeacherSampler" in " ".join(proc.info["cmdline"] or []):
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed += 1
                        break
            time.sleep(0.2)
        thread.join(timeout=240)
        stats = sim.stats()
    assert killed == 1
    s = box["result"].summary
    assert s.complete and s.samples == 120
    assert stats["paid_requests"] == 60 and stats["repeated_paid_requests"] == 0
