"""The teacher's ``scotd_*`` metrics, scraped from Ray's own Prometheus endpoint, equal ``summary.json``.

The scenario runs in a subprocess of its own (a fresh local Ray head with a fixed metrics export
port, whatever cluster the test session joined): it starts the embedded teacher, runs a small
sampling stage, then scrapes ``http://127.0.0.1:<port>/metrics`` until the run's counters reach
the summary's totals (bounded), and prints both as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scotd.metrics import EXPORT_PREFIX

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]

SCENARIO = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    from collections import defaultdict

    import ray
    from prometheus_client.parser import text_string_to_metric_families

    from scotd.config import load_config
    from scotd.metrics import EXPORT_PREFIX, run_tag
    from scotd.sample.config import SampleConfig
    from scotd.sample.run import run_sample
    from scotd.teacher.sim.process import TeacherSimProcess

    port, out = int(sys.argv[1]), sys.argv[2]
    P = EXPORT_PREFIX + "scotd_teacher_"


    def scrape(run):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        got = defaultdict(float)
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name.startswith(P) and s.labels.get("run") == run:
                    extra = s.labels.get("outcome") or s.labels.get("kind") or ""
                    got[s.name[len(P):] + (":" + extra if extra else "")] += s.value
        return dict(got)


    ray.init(address="local", num_cpus=8, include_dashboard=False, _metrics_export_port=port,
             _node_ip_address="127.0.0.1")
    with TeacherSimProcess(["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]) as sim:
        cfg = load_config(SampleConfig, overrides={
            "task": "synthetic", "limit": 10, "n": 3, "out": out, "progress": False,
            "teacher": {"base_url": sim.base_url, "timeout_s": 5.0},
            "budget": {"max_cost_usd": 100.0, "prompt_price_per_1k": 0.5, "completion_price_per_1k": 1.5},
        })
        summary = run_sample(cfg).summary.to_dict()
    want = {
        "requests_total:ok": float(summary["requests_this_run"]["made"]),
        "tokens_total:prompt+completion": float(summary["tokens"]["this_run"]),
        "cost_usd_total": float(summary["cost_usd"]["this_run"]),
    }
    deadline = time.monotonic() + 40
    while True:
        got = scrape(run_tag(out))
        got["tokens_total:prompt+completion"] = got.get("tokens_total:prompt", 0.0) + got.get(
            "tokens_total:completion", 0.0)
        if all(abs(got.get(k, 0.0) - v) < 1e-6 for k, v in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    print("RESULT " + json.dumps({"summary": summary, "scraped": got}), flush=True)
    ray.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scraped_teacher_totals_equal_the_summary(tmp_path: Path) -> None:
    script = tmp_path / "scenario.py"
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
    out = tmp_path / "metrics-run"
    proc = subprocess.run(
        [sys.executable, str(script), str(_free_port()), str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=130,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(line[len("RESULT ") :])
    s, got = result["summary"], result["scraped"]
    made = s["requests_this_run"]["made"]
    assert made == s["requests_planned"] == 10 * 1  # n=3 in one request per question
    assert got.get("requests_total:ok") == made
    assert sum(v for k, v in got.items() if k.startswith("requests_total:")) == sum(
        s["requests_this_run"]["by_status"].values()
    )
    assert (
        got.get("tokens_total:prompt", 0) + got.get("tokens_total:completion", 0) == s["tokens"]["this_run"]
    )
    assert s["tokens"]["this_run"] > 0
    assert got.get("cost_usd_total") == pytest.approx(s["cost_usd"]["this_run"], abs=1e-6)
    assert s["cost_usd"]["this_run"] > 0
    assert got.get("ledger_records_total") == made
    assert got.get("rate_limited_total", 0.0) == s["requests_this_run"]["rate_limited_429"]
    # The limiter actor's gauges are exported under the same run tag.
    assert got.get("budget_usd") == pytest.approx(100.0)
    assert 0 < got.get("budget_remaining_usd", 0.0) < 100.0
    assert EXPORT_PREFIX == "ray_"
