"""``cluster/grafana/scotd.json`` queries only metrics ``scotd.metrics`` defines, as Ray exports them;
``scotd.metrics`` is a no-op without Ray or with ``SCOTD_METRICS=0``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scotd import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana" / "scotd.json"
METRIC_ID = re.compile(rf"\b{metrics.EXPORT_PREFIX}scotd_[A-Za-z0-9_]+")
SERVE_ID = re.compile(r"\bray_serve_[A-Za-z0-9_]+")
# Ray Serve's own series the dashboard reads (queue depth); test_metrics_export checks that a live
# Serve app exports them with a `deployment` label.
RAY_SERVE_SERIES = {"ray_serve_deployment_queued_queries", "ray_serve_replica_processing_queries"}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out += [p, *p.get("panels", [])]
    return [p for p in out if p["type"] != "row"]


def test_every_queried_metric_is_defined() -> None:
    d = _dashboard()
    exprs = [t["expr"] for p in _panels(d) for t in p["targets"]]
    used = {m for e in exprs for m in METRIC_ID.findall(e)}
    assert used, "no scotd metric queried"
    assert used <= metrics.exported_names(), sorted(used - metrics.exported_names())
    assert {m for e in exprs for m in SERVE_ID.findall(e)} == RAY_SERVE_SERIES  # queue depth
    # and every stage shows up
    for stage in ("teacher", "distill", "eval", "serve"):
        assert any(f"scotd_{stage}_" in m for m in used), stage


def test_panels_have_titles_datasources_and_the_variables_exist() -> None:
    d = _dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["run"]["type"] == "query"
    for p in _panels(d):
        assert p.get("title"), p["id"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p[
            "title"
        ]
        for t in p["targets"]:  # ours by run; Ray Serve's (no run tag) by our deployments
            serve_only = set(SERVE_ID.findall(t["expr"])) and not METRIC_ID.findall(t["expr"])
            assert ('deployment=~"AnswerAPI|StudentModel"' if serve_only else 'run=~"$run"') in t["expr"], p[
                "title"
            ]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_names_follow_prometheus_conventions() -> None:
    for name, spec in metrics.SPECS.items():
        assert name == spec.name and name.startswith("scotd_")
        assert name.endswith("_total") == (spec.kind == "counter"), name
        assert "run" not in spec.tags


def test_noop_without_ray_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.ENV, "0")
    assert not metrics.enabled()
    before = dict(metrics._made)
    metrics.inc("scotd_eval_questions_total", 3, run="r")  # nothing made, nothing raised
    metrics.set_gauge("scotd_distill_loss", 1.0, run="r")
    metrics.observe("scotd_serve_confidence", 0.5, run="r")
    metrics.count_teacher_statuses(
        [{"status": "ok", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 1.0}], "r"
    )
    assert metrics._made == before
    monkeypatch.setenv(metrics.ENV, "1")
    ray = __import__("sys").modules.get("ray")
    assert metrics.enabled() == bool(ray is not None and ray.is_initialized())


def test_run_tag() -> None:
    assert metrics.run_tag("s3://bucket/runs/csqa-teacher/") == "csqa-teacher"
    assert metrics.run_tag("/tmp/out/distill") == "distill"
