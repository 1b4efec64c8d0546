"""`scotd sample --teacher.route batch` against the embedded teacher's Batch API (a real HTTP server,
the official `openai` client), on the session's local Ray cluster where the online route is used.

Checked from the provider's side (`/stats`): the same corpus as the online route; `kill -9` of the
driver in each phase then a re-run → one batch, no line billed twice; failed and expired lines
re-bought exactly once; the cost cap binds across a batch; the dry run's cache saving matches
the provider's billing.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.config import load_config
from scotd.sample.batchplan import reserve
from scotd.sample.config import SampleConfig
from scotd.sample.plan import plan_requests
from scotd.sample.run import choose_route, run_sample, status
from scotd.tasks import load_task
from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = [pytest.mark.timeout(300)]

# gpt-4o-mini's prices on both sides, so the provider's bill and ours can be compared.
SIM = ["--latency-base-ms", "5", "--latency-per-token-ms", "0", "--batch-line-ms", "5",
       "--batch-validate-s", "0.1", "--price-prompt-per-1k", "0.00015", "--price-completion-per-1k", "0.0006"]  # fmt: skip
PRICES = {
    "prompt_price_per_1k": 0.00015,
    "completion_price_per_1k": 0.0006,
    "cached_prompt_price_per_1k": 0.000075,
}


def _cfg(sim: TeacherSimProcess, out: Path, **over: Any) -> SampleConfig:
    base: dict[str, Any] = {
        "task": "synthetic",
        "limit": 8,
        "n": 3,
        "out": str(out),
        "progress": False,
        "teacher": {"base_url": sim.base_url, "route": "batch", "timeout_s": 5.0, "backoff_base_s": 0.05},
        "batch": {"poll_s": 0.1, "max_wait_s": 60},
        "budget": PRICES,
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return load_config(SampleConfig, overrides=base)


def _corpus(out: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(out / "corpus.parquet").to_pylist()
    return sorted(rows, key=lambda r: (r["request_key"], r["sample_index"] or 0))


def test_batch_route_gives_the_online_corpus_at_the_batch_price(ray_session: str, tmp_path: Path) -> None:
    with TeacherSimProcess(SIM) as sim:
        online = run_sample(_cfg(sim, tmp_path / "online", teacher={"route": "online"}))
        online_bill = sim.stats()["by_route"]["online"]["cost_usd"]
    with TeacherSimProcess(SIM) as sim:
        batch = run_sample(_cfg(sim, tmp_path / "batch"))
        stats = sim.stats()
        table = status(_cfg(sim, tmp_path / "batch"))
    s = batch.summary
    assert s.route == "batch" and s.complete and s.requests_this_run["made"] == 8
    assert stats["batches_created"] == 1 and stats["batch_lines_billed"] == 8
    assert stats["online_requests_billed"] == 0 and stats["lines_billed_twice"] == 0
    assert _corpus(tmp_path / "batch") == _corpus(tmp_path / "online")
    # Our ledger's cost is the provider's bill, at half the online price.
    assert s.cost_usd["total"] == pytest.approx(stats["cost_usd"], rel=0.01)
    assert s.cost_split["batch"] == pytest.approx(s.cost_usd["total"]) and s.cost_split["online"] == 0
    assert stats["cost_usd"] == pytest.approx(online_bill / 2, rel=0.01)
    assert online.summary.cost_usd["total"] == pytest.approx(online_bill, rel=0.01)
    assert "| ended | completed |" in table and "| 8 | 8 | 0 | 0 |" in table
    # A re-run buys nothing and creates no batch.
    with TeacherSimProcess(SIM) as sim:
        again = run_sample(_cfg(sim, tmp_path / "batch"))
        assert sim.stats()["requests"] == 0 and sim.stats()["batches_created"] == 0
    assert again.summary.complete and _corpus(tmp_path / "batch") == _corpus(tmp_path / "online")


def _cmd(base_url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scotd", "sample", "--limit", "6", "--n", "2", "--out", str(out),
            "--teacher.base-url", base_url, "--teacher.route", "batch", "--batch.poll-s", "0.1",
            "--progress", "false", *extra]  # fmt: skip


@pytest.mark.parametrize("phase", ["upload", "create", "poll", "download"])
def test_kill_9_in_each_phase_then_resume_pays_once(tmp_path: Path, phase: str) -> None:
    """The driver SIGKILLs itself right after the provider acted in ``phase`` (before or while that
    is recorded); the same command then resumes: one upload, one batch, every line billed once."""
    out = tmp_path / "run"
    with TeacherSimProcess([*SIM, "--batch-line-ms", "30"]) as sim:
        killed = subprocess.run(
            _cmd(sim.base_url, out, "--batch.fault-kill-at", phase),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == -9, killed.stderr[-2000:]
        done = subprocess.run(_cmd(sim.base_url, out), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        stats = sim.stats()
        import openai

        files = openai.OpenAI(base_url=sim.base_url, api_key="x").files.list(purpose="batch").data
    assert stats["batches_created"] == 1 and len(files) == 1, (phase, stats["batches_created"], len(files))
    assert stats["batch_lines_billed"] == 6 and stats["lines_billed_twice"] == 0
    assert stats["repeated_paid_requests"] == 0
    assert len(pq.read_table(out / "corpus.parquet")) == 12


def test_failed_and_expired_lines_are_rebought_once(ray_session: str, tmp_path: Path) -> None:
    # Expiry after 5 lines: the other 3 come back unfinished and are bought online, once.
    with TeacherSimProcess([*SIM, "--batch-expire-after-lines", "5"]) as sim:
        s = run_sample(_cfg(sim, tmp_path / "expired", batch={"retry_route": "online"})).summary
        stats = sim.stats()
    assert s.complete and s.batches["batches"] == {"expired": 1}
    assert stats["batch_lines_billed"] == 5 and stats["online_requests_billed"] == 3
    assert stats["repeated_paid_requests"] == 0
    # Per-line failures (seeded, unbilled), re-bought in new batches until each has an answer.
    with TeacherSimProcess([*SIM, "--batch-line-failure-rate", "0.4", "--seed", "3"]) as sim:
        s = run_sample(
            _cfg(sim, tmp_path / "failed", batch={"retry_route": "batch", "max_line_retries": 4})
        ).summary
        stats = sim.stats()
    assert s.complete and stats["batches_created"] >= 2
    assert stats["batch_lines_billed"] == 8 and stats["repeated_paid_requests"] == 0


def test_cost_cap_binds_across_a_batch(tmp_path: Path) -> None:
    probe = load_config(SampleConfig, overrides={"task": "synthetic", "limit": 8, "n": 3, "budget": PRICES})
    plan = plan_requests(load_task("synthetic", "train", limit=8).examples, probe)
    worst = [reserve([p], probe.price()).cost_usd for p in plan]
    cap = sum(worst[:3]) + worst[3] / 2  # room for three lines' worst case, not four
    with TeacherSimProcess(SIM) as sim:
        s = run_sample(_cfg(sim, tmp_path / "capped", budget={"max_cost_usd": cap})).summary
        stats = sim.stats()
    assert s.budget_stop and not s.complete
    assert stats["batch_lines_billed"] == 3 and stats["cost_usd"] <= cap
    assert s.cost_usd["total"] <= cap


def test_dry_run_cache_saving_matches_the_bill(tmp_path: Path) -> None:
    """prompt_order fixed: every prompt starts with the same demonstrations; the provider caches them
    (threshold lowered to 256 tokens on both sides: the synthetic prefix is ~480 tokens)."""
    over = {"prompt_order": "fixed", "teacher": {"cache_min_tokens": 256}}
    with TeacherSimProcess([*SIM, "--cache-min-tokens", "256"]) as sim:
        dry = run_sample(_cfg(sim, tmp_path / "c", dry_run=True, **over)).summary
        s = run_sample(_cfg(sim, tmp_path / "c", **over)).summary
        stats = sim.stats()
    routes = dry.routes
    assert routes["prefix_cacheable"] and routes["cached_tokens"] > 0
    billed_cached = stats["by_route"]["batch"]["prompt_cached"]
    assert billed_cached == pytest.approx(routes["cached_tokens"], rel=0.01)
    saving_billed = billed_cached * (0.00015 - 0.000075) / 1000 / 2
    assert routes["cache_saving_batch_usd"] == pytest.approx(saving_billed, rel=0.01)
    assert s.cache["cached_tokens"] == billed_cached and 0 < s.cache["hit_share"] < 1
    assert s.cost_usd["total"] == pytest.approx(stats["cost_usd"], rel=0.01)


def test_queued_token_limit_is_a_clean_resumable_stop(tmp_path: Path) -> None:
    out = tmp_path / "queued"
    with TeacherSimProcess([*SIM, "--batch-queue-tokens", "1000"]) as sim:
        s = run_sample(_cfg(sim, out)).summary
        refused = sim.stats()
    assert not s.complete and s.batches["rejected"] and "token_limit_exceeded" in s.batches["rejected"][0]
    assert refused["batch_lines_billed"] == 0 and refused["batches_created"] == 1
    with TeacherSimProcess(SIM) as sim:  # the limit lifted: the same command resumes
        s = run_sample(_cfg(sim, out)).summary
        stats = sim.stats()
    assert s.complete and stats["batch_lines_billed"] == 8 and stats["batches_created"] == 1


class _NoBatchAPI(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint without a Batch API, as self-hosted vLLM answers: 404 JSON."""

    def do_GET(self) -> None:
        body = json.dumps({"error": {"message": f"Not Found: {self.path}", "code": 404}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_route_auto_takes_batch_where_offered_and_the_run_is_big(ray_session: str, tmp_path: Path) -> None:
    with TeacherSimProcess(SIM) as sim:
        cfg = _cfg(sim, tmp_path / "auto", teacher={"route": "auto"}, batch={"auto_min_requests": 8})
        assert choose_route(cfg, 7) == "online"  # below the threshold: online, whatever the endpoint
        summary = run_sample(cfg).summary
        stats = sim.stats()
    assert summary.route == "batch" and summary.complete  # 8 requests, and the sim has a Batch API
    assert stats["batches_created"] == 1 and stats["online_requests_billed"] == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoBatchAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        cfg = _cfg(sim, tmp_path / "vllm", teacher={"route": "auto", "base_url": base_url})
        assert choose_route(cfg, 100_000) == "online"  # no Batch API (GET /batches is a 404)
    finally:
        server.shutdown()
