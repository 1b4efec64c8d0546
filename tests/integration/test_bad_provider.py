"""`scotd sample` against a provider that answers oddly (a real `scotd teacher-sim` bending its
answers), on the session's local Ray cluster: every odd answer is a counted row or a bounded
re-buy, never a crash; nothing paid is lost and nothing is paid twice.

The simulator runs with ``--idempotency false``, like most providers: a second payment would show
in its ``/stats`` as ``repeated_paid_requests``. Its HTML, error-object and truncated 200s are not
billed; its odd usage and short answers are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.artifacts import SampleSummary
from scotd.config import load_config
from scotd.outlock import OutputLocked, output_lock
from scotd.sample.actors import MAX_UNUSABLE_ANSWERS
from scotd.sample.config import SampleConfig
from scotd.sample.run import run_sample
from scotd.teacher.ledger import Ledger
from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

FAST = ["--latency-base-ms", "5", "--latency-per-token-ms", "0", "--idempotency", "false"]
ODD = {
    "usage_missing": 0.05,
    "usage_null": 0.05,
    "usage_string": 0.05,
    "usage_strings": 0.05,
    "short_choices": 0.06,
    "html": 0.05,
    "error_body": 0.05,
    "malformed": 0.04,
}
REQUESTS = 40


@pytest.fixture(scope="module")
def odd_sim() -> Iterator[TeacherSimProcess]:
    args = [*FAST, "--seed", "7"]  # a seed whose first 40 answers show every shape
    for name, rate in ODD.items():
        args += [f"--fault-{name.replace('_', '-')}", str(rate)]
    with TeacherSimProcess(args) as sim:
        yield sim


def _cfg(sim: TeacherSimProcess, out: Path, **over: Any) -> SampleConfig:
    base: dict[str, Any] = {
        "task": "synthetic",
        "limit": REQUESTS,
        "n": 2,
        "out": str(out),
        "progress": False,
        "teacher": {"base_url": sim.base_url, "timeout_s": 5.0, "backoff_base_s": 0.02, "backoff_max_s": 0.1},
        **over,
    }
    return load_config(SampleConfig, overrides=base)


def _paid(sim: TeacherSimProcess) -> tuple[int, int]:
    stats = sim.stats()
    return stats["paid_requests"], stats["repeated_paid_requests"]


@pytest.fixture(scope="module")
def odd_run(ray_session: str, odd_sim: TeacherSimProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run through the odd provider, shared by the tests that check what it left."""
    out = tmp_path_factory.mktemp("odd") / "run"
    odd_sim.reset_stats()
    result = run_sample(_cfg(odd_sim, out))
    (out / "sim_stats.json").write_text(json.dumps(odd_sim.stats()))
    (out / "result_summary.json").write_text(json.dumps(result.summary.to_dict()))
    return out


def test_odd_answers_are_counted_and_nothing_paid_is_lost_or_paid_twice(odd_run: Path) -> None:
    stats = json.loads((odd_run / "sim_stats.json").read_text())
    s = SampleSummary.from_dict(json.loads((odd_run / "result_summary.json").read_text()))
    seen = stats["outcomes"]
    assert all(seen[name] > 0 for name in ODD), seen  # every shape was exercised
    # Every billed answer is in the ledger, once: nothing paid lost, nothing paid twice.
    assert stats["repeated_paid_requests"] == 0
    assert stats["paid_requests"] == REQUESTS == len(Ledger(str(odd_run / "ledger")).keys())
    assert s.complete and s.requests_this_run["by_status"] == {"ok": REQUESTS}
    odd = s.odd_responses
    assert odd["usage_missing"] == seen["usage_missing"] + seen["usage_null"]
    assert odd["usage_malformed"] == seen["usage_string"]  # numbers as strings are read as numbers
    assert odd["usage_estimated"] == odd["usage_missing"] + odd["usage_malformed"]
    assert odd["short_choices"] == seen["short_choices"] == odd["samples_missing"]  # n=2 -> 1 of 2
    unbilled = seen["html"] + seen["error_body"] + seen["malformed"]
    assert odd["unusable_this_run"] == odd["unusable_set_aside"] == unbilled
    rows = pq.read_table(odd_run / "corpus.parquet").to_pylist()
    assert len(rows) == 2 * REQUESTS and {r["sample_index"] for r in rows} == {0, 1}
    missing = [r for r in rows if r["error"] is not None]
    assert len(missing) == seen["short_choices"]
    assert all(r["error"] == "the provider returned 1 of 2 samples" for r in missing)
    assert s.samples == 2 * REQUESTS - len(missing)
    errors = [json.loads(line) for line in (odd_run / "errors.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "unusable_response" for e in errors) == len(
        {e["key"] for e in errors if e["kind"] == "unusable_response"}
    )
    assert sum(e["kind"] == "odd_response" for e in errors) == seen["short_choices"] + odd["usage_estimated"]


def test_resume_after_odd_answers_buys_nothing(odd_run: Path, odd_sim: TeacherSimProcess) -> None:
    before = odd_sim.stats()["requests"]
    rows = pq.read_table(odd_run / "corpus.parquet").to_pylist()
    again = run_sample(_cfg(odd_sim, odd_run))
    assert odd_sim.stats()["requests"] == before
    assert again.summary.complete and pq.read_table(odd_run / "corpus.parquet").to_pylist() == rows


def test_the_ledger_heals_and_buys_each_broken_record_once(
    ray_session: str, odd_sim: TeacherSimProcess, tmp_path: Path
) -> None:
    out = tmp_path / "heal"
    odd_sim.reset_stats()
    first = run_sample(_cfg(odd_sim, out, limit=8))
    assert first.summary.complete
    records = sorted((out / "ledger" / "responses").rglob("*.json"))
    empty, torn, html, unpriced = records[:4]
    empty.write_bytes(b"")
    torn.write_bytes(torn.read_bytes()[:50])
    html.write_text(json.dumps({**json.loads(html.read_text()), "raw_body": "<html>502 Bad Gateway</html>"}))
    # A run that died between storing an answer and pricing it left only the raw text.
    kept = json.loads(unpriced.read_text())
    unpriced.write_text(json.dumps({k: kept[k] for k in ("key", "request", "raw_body")}))
    paid_before, _ = _paid(odd_sim)

    healed = run_sample(_cfg(odd_sim, out, limit=8)).summary
    paid_after, repeated = _paid(odd_sim)
    assert healed.complete
    assert paid_after - paid_before == 3  # the empty, the torn and the HTML one: once each
    # Only the answers lost with the empty and torn records can be paid for a second time (once;
    # a re-buy that meets an unbilled fault goes out again under a new idempotency key).
    assert repeated <= len(healed.ledger_quarantined) == 2
    assert healed.requests_this_run["by_status"] == {"ok": 3}
    quarantined = {q["file"]: q["reason"] for q in healed.ledger_quarantined}
    assert quarantined == {str(empty): "empty file", str(torn): quarantined[str(torn)]}
    assert quarantined[str(torn)].startswith("not JSON")
    assert all(Path(q["moved_to"]).is_file() for q in healed.ledger_quarantined)
    repriced = json.loads(unpriced.read_text())
    assert repriced["cost_usd"] == kept["cost_usd"] and repriced["usage"] == kept["usage"]
    assert len(pq.read_table(out / "corpus.parquet")) == 16


def test_a_request_whose_answers_never_hold_one_is_bought_a_bounded_number_of_times(
    ray_session: str, tmp_path: Path
) -> None:
    with TeacherSimProcess([*FAST, "--fault-html", "1.0"]) as sim:
        cfg = _cfg(sim, tmp_path / "html", limit=2, n=1)
        s = run_sample(cfg).summary
        assert sim.stats()["outcomes"]["html"] == 2 * MAX_UNUSABLE_ANSWERS
        assert s.requests_missing == {"unusable": 2} and not s.complete
        assert s.requests_this_run["by_status"] == {"failed_unusable": 2}
        rows = pq.read_table(tmp_path / "html" / "corpus.parquet").to_pylist()
        assert all("HTML page" in r["error"] for r in rows) and len(rows) == 2
        again = run_sample(cfg).summary
        assert sim.stats()["requests"] == 2 * MAX_UNUSABLE_ANSWERS  # the bound holds across runs
        assert again.requests_missing == {"unusable": 2} and sim.stats()["paid_requests"] == 0


def test_a_second_run_on_the_same_directory_refuses_at_once(
    odd_sim: TeacherSimProcess, tmp_path: Path
) -> None:
    out = tmp_path / "locked"
    before = odd_sim.stats()["requests"]
    with output_lock(str(out), "scotd sample (first)"), pytest.raises(OutputLocked, match="first"):
        run_sample(_cfg(odd_sim, out))
    assert odd_sim.stats()["requests"] == before
