"""`scotd eval` through Ray Data with tiny local students: both engines, K samples kept, exact scores."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.config import load_config
from scotd.eval.config import EvalConfig
from scotd.eval.run import recompute, run_eval
from scotd.tasks import load_task
from tests.helpers.tiny_models import random_student

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_student(tmp_path_factory.mktemp("random"))


def _eval(model: Path, out: Path, **over: Any) -> Any:
    cfg = load_config(
        EvalConfig,
        overrides={
            "model": str(model),
            "out": str(out),
            "task": "synthetic",
            "split": "test",
            "progress": False,
            **over,
        },
    )
    return run_eval(cfg)


def _samples(out: Path, mode: str = "sampled") -> dict[str, list[dict[str, Any]]]:
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in pq.read_table(out / "predictions.parquet").to_pylist():
        if r["mode"] == mode:
            by_q[r["example_id"]].append(r)
    return by_q


@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_engines_keep_k_distinct_samples(
    engine: str, random_model: Path, ray_session: str, tmp_path: Path
) -> None:
    result = _eval(
        random_model, tmp_path / engine, engine=engine, limit=6, votes=4, temperature=1.0, max_new_tokens=24
    )
    assert result.summary.engine == engine
    by_q = _samples(tmp_path / engine)
    assert len(by_q) == 6
    for rows in by_q.values():
        assert [r["sample_index"] for r in rows] == [0, 1, 2, 3]
        assert len({r["text"] for r in rows}) == 4, [r["text"] for r in rows]
    assert len(_samples(tmp_path / engine, "greedy")) == 6
    assert result.summary.generated_tokens_per_s > 0


def test_always_a_scores_exactly_the_share_of_gold_a(
    always_a_model: Path, ray_session: str, tmp_path: Path
) -> None:
    limit = 60
    result = _eval(always_a_model, tmp_path / "a", engine="hf", limit=limit, votes=3, ks=[1, 3])
    golds = [ex.gold for ex in load_task("synthetic", "test", limit=limit).examples]
    share = sum(g == "a" for g in golds) / limit
    assert 0 < share < 1
    m = result.metrics
    assert m["greedy"]["accuracy"] == pytest.approx(share, abs=1e-4)
    assert m["sampled"]["maj_at_k"]["3"]["accuracy"] == pytest.approx(share, abs=1e-4)
    assert m["greedy"]["unparseable_rate"] == 0.0
    # The outputs a person reads, and metrics recomputed from predictions alone.
    out = tmp_path / "a"
    assert {"predictions.parquet", "metrics.json", "report.md", "vote_curve.png", "config.yaml"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "vote_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model | greedy | maj@1 | maj@3 |" in (out / "report.md").read_text()
    saved = json.loads((out / "metrics.json").read_text())
    saved.pop("run")
    assert recompute(str(out)) == saved == m
