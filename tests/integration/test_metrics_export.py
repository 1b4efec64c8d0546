"""Every stage's ``scotd_*`` metrics, scraped from Ray's own Prometheus endpoint, equal what the stage wrote.

The scenario runs in a subprocess of its own (a fresh local Ray head with a fixed metrics export
port, whatever cluster the test session joined): a small sampling stage against the embedded
teacher (counters = ``summary.json``), a tiny distillation (rank 0's gauges = ``metrics.jsonl``
rows, scraped while it trains), an evaluation (counters = ``predictions.parquet``) and the served
export (requests by status, votes, latency by K, confidence). Scrapes of
``http://127.0.0.1:<port>/metrics`` are repeated until the values arrive (bounded).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scotd.metrics import EXPORT_PREFIX
from tests.unit.test_metrics_dashboard import RAY_SERVE_SERIES

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

SCENARIO = textwrap.dedent(
    """
    import json, sys, threading, time, urllib.request
    from collections import defaultdict
    from pathlib import Path

    import pyarrow.parquet as pq
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    from scotd.config import load_config
    from scotd.corpus.demo import write_demo_corpus
    from scotd.distill.config import DistillConfig
    from scotd.distill.run import run_distill
    from scotd.eval.config import EvalConfig
    from scotd.eval.run import run_eval
    from scotd.httpjson import http_json
    from scotd.metrics import EXPORT_PREFIX, run_tag
    from scotd.sample.config import SampleConfig
    from scotd.sample.run import run_sample
    from scotd.serve.config import ServeConfig
    from scotd.teacher.sim.process import TeacherSimProcess

    port, http_port, root = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])


    def scrape_all():
        \"\"\"{run: {series name without prefix[:label values]: value}} of the scotd_* series.\"\"\"
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        got = defaultdict(lambda: defaultdict(float))
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name.startswith(EXPORT_PREFIX + "scotd_") and "le" not in s.labels:
                    extra = [s.labels[k] for k in ("outcome", "kind", "route", "status", "votes") if k in s.labels]
                    key = ":".join([s.name[len(EXPORT_PREFIX + "scotd_"):], *extra])
                    got[s.labels.get("run", "")][key] += s.value
        return got


    def scrape(run):
        return dict(scrape_all().get(run, {}))


    def settle(run, want):
        \"\"\"Scrape until every wanted series has its value (bounded), return the last scrape.\"\"\"
        deadline = time.monotonic() + 40
        while True:
            got = scrape(run)
            if all(abs(got.get(k, -1.0) - v) < 1e-6 for k, v in want.items()) or time.monotonic() > deadline:
                return got
            time.sleep(1.0)


    t0 = time.monotonic()
    # A dashboard named to the workers, as scotd's own local clusters have: Ray Train's
    # PlacementGroupCleaner otherwise stalls 12 s at the end of the distill stage.
    from scotd.localcluster.head import free_port
    dash = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=dash, _metrics_export_port=port, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}"}})
    result = {}

    # -- teacher: a small sampling stage against the embedded teacher
    out = str(root / "metrics-run")
    with TeacherSimProcess(["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]) as sim:
        cfg = load_config(SampleConfig, overrides={
            "task": "synthetic", "limit": 10, "n": 3, "out": out, "progress": False,
            "teacher": {"base_url": sim.base_url, "timeout_s": 5.0},
            "budget": {"max_cost_usd": 100.0, "prompt_price_per_1k": 0.5, "completion_price_per_1k": 1.5},
        })
        summary = run_sample(cfg).summary.to_dict()
    got = settle(run_tag(out), {
        "teacher_requests_total:ok": float(summary["requests_this_run"]["made"]),
        "teacher_cost_usd_total:online": float(summary["cost_usd"]["this_run"]),
    })
    result["teacher"] = {"summary": summary, "scraped": got, "at_s": round(time.monotonic() - t0, 1)}

    # -- distill: the tiny student, one worker, on the demo corpus. Rank 0's gauges live as long as
    # the worker does (Ray drops a dead process's series), so they are scraped while it trains.
    corpus = write_demo_corpus(root / "corpus" / "synthetic-train-balanced", questions=24, per_question=2)
    dcfg = load_config(DistillConfig, overrides={
        "student": "tiny", "tiny": {"tokenizer": "word"}, "corpus": str(corpus), "out": str(root / "students"),
        "num_workers": 1, "cpus_per_worker": 1, "torch_threads": 1, "batch_size": 8, "max_steps": 24,
        "log_every_steps": 4, "checkpoint_every_steps": 8, "eval_every_steps": 100, "max_length": 256,
    })
    snapshots, done = [], threading.Event()

    def watch():
        while not done.is_set():
            try:
                got = {k: v for r, got in scrape_all().items() if r.startswith("tiny-") for k, v in got.items()}
                if "distill_step" in got:
                    snapshots.append(got)
            except OSError:
                pass
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    student = run_distill(dcfg)
    done.set()
    watcher.join()
    rows = [json.loads(x) for x in (Path(student.uri) / "metrics.jsonl").read_text().splitlines()]
    result["distill"] = {"rows": [r for r in rows if "loss" in r], "snapshots": snapshots,
                         "run": run_tag(student.uri), "gone_after": scrape(run_tag(student.uri))}

    # -- eval: the exported student on 4 questions, greedy + 2 votes each
    ecfg = load_config(EvalConfig, overrides={
        "model": student.export_uri, "out": str(root / "eval-run"), "task": "synthetic", "split": "test",
        "limit": 4, "votes": 2, "max_new_tokens": 16, "engine": "hf", "progress": False,
    })
    run_eval(ecfg)
    preds = pq.read_table(root / "eval-run" / "predictions.parquet").to_pylist()
    want = {"eval_questions_total": 4.0, "eval_samples_total": float(len(preds)),
            "eval_unparseable_total": float(sum(r["pred_label"] is None for r in preds))}
    result["eval"] = {"predictions": len(preds), "unparseable": want["eval_unparseable_total"],
                      "scraped": settle("eval-run", want)}

    # -- serve: the export behind /v1/answer; two answers (K = 2 and 3) and one refused request
    from ray import serve
    from scotd.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    scfg = ServeConfig.model_validate({"model": student.export_uri, "engine": "hf", "threads": 1,
                                       "name": "served-run", "max_new_tokens": 16})
    serve.run(build_app(scfg, {"ray_actor_options": {"num_cpus": 0.5}}), name="s", route_prefix="/s")
    url = f"http://127.0.0.1:{http_port}/s/v1/answer"
    q = {"question": "Tom has 3 apples. He eats 1. How many apples does Tom have now?", "choices": ["2", "3"]}
    answers = [http_json("POST", url, {**q, "votes": k}, timeout=60) for k in (2, 3)]
    refused = http_json("POST", url, {**q, "votes": 0}, timeout=60)
    bodies = [a.body for a in answers]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    ray_serve = defaultdict(set)  # Ray Serve's own series (the dashboard's queue depth): deployments
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name.startswith("ray_serve_"):
                ray_serve[smp.name].add(smp.labels.get("deployment", ""))
    want = {"serve_requests_total:200": 2.0, "serve_requests_total:422": 1.0,
            "serve_votes_spent_total": float(sum(b["samples"] for b in bodies)),
            "serve_unparseable_total": float(sum(b["unparseable"] for b in bodies)),
            "serve_latency_seconds_count:2": 1.0, "serve_latency_seconds_count:3": 1.0,
            "serve_confidence_count": 2.0}
    result["serve"] = {"statuses": [a.status for a in answers] + [refused.status], "answers": bodies,
                       "ray_serve": {k: sorted(v) for k, v in ray_serve.items()},
                       "want": want, "scraped": settle("served-run", want)}
    serve.shutdown()
    result["wall_s"] = round(time.monotonic() - t0, 1)
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the scenario once: {stage: what the stage reported, what Prometheus showed}."""
    root = tmp_path_factory.mktemp("metrics")
    script = root / "scenario.py"
    script.write_text(SCENARIO)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_AUTH_MODE="disabled",
        RAY_metrics_report_interval_ms="1000",  # export every second (default 10 s)
        SCOTD_METRICS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(_free_port()), str(_free_port()), str(root)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=280,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def test_scraped_teacher_totals_equal_the_summary(scraped: dict[str, Any]) -> None:
    s, got = scraped["teacher"]["summary"], scraped["teacher"]["scraped"]
    made = s["requests_this_run"]["made"]
    assert made == s["requests_planned"] == 10 * 1  # n=3 in one request per question
    assert got.get("teacher_requests_total:ok") == made
    assert sum(v for k, v in got.items() if k.startswith("teacher_requests_total:")) == sum(
        s["requests_this_run"]["by_status"].values()
    )
    tokens = got.get("teacher_tokens_total:prompt", 0) + got.get("teacher_tokens_total:completion", 0)
    assert tokens == s["tokens"]["this_run"] > 0
    assert got.get("teacher_cost_usd_total:online") == pytest.approx(s["cost_usd"]["this_run"], abs=1e-6)
    assert s["cost_usd"]["this_run"] > 0
    assert got.get("teacher_ledger_records_total") == made
    assert got.get("teacher_rate_limited_total", 0.0) == s["requests_this_run"]["rate_limited_429"]
    # The limiter actor's gauges are exported under the same run tag.
    assert got.get("teacher_budget_usd") == pytest.approx(100.0)
    assert 0 < got.get("teacher_budget_remaining_usd", 0.0) < 100.0
    assert EXPORT_PREFIX == "ray_"


def test_scraped_distill_eval_and_serve_series_equal_what_each_stage_wrote(scraped: dict[str, Any]) -> None:
    d = scraped["distill"]
    by_step = {r["step"]: r for r in d["rows"]}
    assert sorted(by_step) == list(range(4, 25, 4))
    seen = d["snapshots"]
    assert seen, "no scotd_distill_* series was scraped while the student trained"
    for got in seen:  # each scrape shows one logged row exactly, under the run's tag
        row = by_step[int(got["distill_step"])]
        assert got["distill_loss"] == pytest.approx(row["loss"], rel=1e-9)
        assert got["distill_tokens_per_second"] == pytest.approx(row["tokens_per_s"], rel=1e-9)
        assert got["distill_step_seconds"] == pytest.approx(row["step_time_s"], rel=1e-9)
        assert "distill_mfu" not in got  # no GPU: absent, not zero
        assert 0 <= got.get("distill_checkpoint_age_seconds", 0.0) < 600
    assert len({got["distill_step"] for got in seen}) >= 2  # the gauges moved as it trained
    assert d["gone_after"] == {}  # a finished worker's gauges leave with it
    e = scraped["eval"]
    assert e["predictions"] == 4 * 3  # greedy + 2 votes per question
    assert e["scraped"].get("eval_questions_total") == 4.0
    assert e["scraped"].get("eval_samples_total") == 12.0
    assert e["scraped"].get("eval_unparseable_total", 0.0) == e["unparseable"]
    s = scraped["serve"]
    assert s["statuses"] == [200, 200, 422]
    assert [b["samples"] for b in s["answers"]] == [2, 3]
    for key, value in s["want"].items():
        assert s["scraped"].get(key, 0.0) == pytest.approx(value), key
    assert s["scraped"].get("serve_latency_seconds_sum:2", 0.0) > 0
    # Ray Serve's own series that the dashboard's queue-depth panel reads exist, per deployment.
    for name in RAY_SERVE_SERIES:
        assert {"AnswerAPI", "StudentModel"} & set(s["ray_serve"].get(name, [])), (
            name,
            sorted(s["ray_serve"]),
        )
