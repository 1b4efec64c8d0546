"""Prometheus metrics of every stage, exported by Ray's own metrics endpoint (no extra server).

Thin wrappers over ``ray.util.metrics``: each metric is made lazily, once per process, on its
first use; every call is a cheap no-op when Ray is not initialized in this process or when
``SCOTD_METRICS=0``; a failure inside Ray's metrics never reaches the stage (logged once).

Every series carries a ``run`` tag (the run's output directory name, see ``run_tag``) plus the
tags of its stage. Names follow Prometheus conventions: the ``scotd_`` prefix, ``_total`` on
counters, units in the name. Ray 2.60 exports them with its ``ray_`` namespace in front
(``EXPORT_PREFIX``): ``scotd_teacher_requests_total`` is scraped as
``ray_scotd_teacher_requests_total``. Each worker process reports its own series (Ray adds
``WorkerId``, ``NodeAddress``, ...): sum over them in queries (``sum by (run) (...)``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

ENV = "SCOTD_METRICS"  # "0" turns every metric into a no-op
EXPORT_PREFIX = "ray_"  # what Ray 2.60's Prometheus endpoint puts in front of every custom metric

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SHARE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


@dataclass(frozen=True)
class Spec:
    """One metric: its name (unprefixed), kind, help text, stage tags (``run`` is always added)."""

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        # -- teacher (counted by the sampling driver from the rows it records: exactly summary.json)
        Spec("scotd_teacher_requests_total", "counter",
             "Teacher requests finished, by outcome (ok = paid and recorded; cached, failed_*, budget).",
             ("outcome",)),
        Spec("scotd_teacher_rate_limited_total", "counter", "HTTP 429 answers from the teacher."),
        Spec("scotd_teacher_tokens_total", "counter", "Tokens paid for, by kind (prompt | completion).",
             ("kind",)),
        Spec("scotd_teacher_cost_usd_total", "counter", "USD paid for teacher answers, by route.", ("route",)),
        Spec("scotd_teacher_ledger_records_total", "counter", "Paid answers stored in the ledger."),
        # -- teacher (the shared rate limiter actor)
        Spec("scotd_teacher_paced_rpm", "gauge", "The limiter's current request pacing rate (requests/min)."),
        Spec("scotd_teacher_allowed_rpm", "gauge", "The request limit the limiter paces under (requests/min)."),
        Spec("scotd_teacher_paced_tpm", "gauge", "The limiter's current token pacing rate (tokens/min)."),
        Spec("scotd_teacher_allowed_tpm", "gauge", "The token limit the limiter paces under (tokens/min)."),
        Spec("scotd_teacher_in_flight", "gauge", "Teacher requests granted and not yet answered."),
        Spec("scotd_teacher_budget_usd", "gauge", "The run's cost cap (USD), what this run may still spend at start."),
        Spec("scotd_teacher_budget_remaining_usd", "gauge",
             "Cost cap minus spent and reserved (USD); absent without a cap."),
        # -- distill (rank 0, at each log interval)
        Spec("scotd_distill_loss", "gauge", "Training loss over the last log window."),
        Spec("scotd_distill_val_loss", "gauge", "Validation loss at the last evaluation."),
        Spec("scotd_distill_tokens_per_second", "gauge", "Training throughput (real tokens/s, all ranks)."),
        Spec("scotd_distill_step_seconds", "gauge", "Mean wall time of one optimizer step."),
        Spec("scotd_distill_mfu", "gauge", "Model FLOPs utilisation (0..1); absent off GPU."),
        Spec("scotd_distill_step", "gauge", "Optimizer steps done."),
        Spec("scotd_distill_checkpoint_age_seconds", "gauge", "Seconds since the last checkpoint, at the last log."),
        Spec("scotd_distill_last_checkpoint_timestamp_seconds", "gauge",
             "Unix time of the last checkpoint (age = time() - this)."),
        # -- eval (the driver)
        Spec("scotd_eval_questions_total", "counter", "Questions generated for."),
        Spec("scotd_eval_samples_total", "counter", "Generations parsed (greedy and sampled)."),
        Spec("scotd_eval_unparseable_total", "counter", "Generations with no parseable answer."),
        # -- serve (AnswerAPI replicas)
        Spec("scotd_serve_requests_total", "counter", "/v1/answer requests, by HTTP status.", ("status",)),
        Spec("scotd_serve_latency_seconds", "histogram", "/v1/answer latency of answered requests, by K.",
             ("votes",), LATENCY_BUCKETS_S),
        Spec("scotd_serve_votes_spent_total", "counter", "Generations voted on (adaptive: only those drawn)."),
        Spec("scotd_serve_confidence", "histogram", "The winning answer's vote share.", (), SHARE_BUCKETS),
        Spec("scotd_serve_unparseable_total", "counter", "Generations with no parseable answer."),
    )
}  # fmt: skip


def exported_names() -> set[str]:
    """Every series name Prometheus sees (histograms add ``_bucket``, ``_sum``, ``_count``)."""
    names: set[str] = set()
    for s in SPECS.values():
        base = EXPORT_PREFIX + s.name
        names |= {base + x for x in ("_bucket", "_sum", "_count")} if s.kind == "histogram" else {base}
    return names


def run_tag(out_dir: str) -> str:
    """The ``run`` tag of an output directory (local path or URI): its last path component."""
    return out_dir.rstrip("/").rsplit("/", 1)[-1] or out_dir


_made: dict[str, Any] = {}
_lock = threading.Lock()
_failed = False


def enabled() -> bool:
    """On unless ``SCOTD_METRICS=0``, and only in a process where Ray is initialized."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    ray = sys.modules.get("ray")  # never import Ray here: Ray-free code paths stay Ray-free
    return ray is not None and bool(ray.is_initialized())


def _metric(name: str) -> Any:
    m = _made.get(name)
    if m is not None:
        return m
    spec = SPECS[name]
    with _lock:
        if name not in _made:
            from ray.util import metrics as rm

            keys = ("run", *spec.tags)
            if spec.kind == "counter":
                _made[name] = rm.Counter(name, spec.description, tag_keys=keys)
            elif spec.kind == "gauge":
                _made[name] = rm.Gauge(name, spec.description, tag_keys=keys)
            else:
                _made[name] = rm.Histogram(name, spec.description, list(spec.boundaries), tag_keys=keys)
        return _made[name]


def _record(op: str, name: str, value: float, run: str, tags: dict[str, Any]) -> None:
    global _failed
    if not enabled():
        return
    try:
        all_tags = {"run": run, **{k: str(v) for k, v in tags.items()}}
        getattr(_metric(name), op)(float(value), tags=all_tags)
    except Exception as e:  # metrics must never break a stage
        if not _failed:
            _failed = True
            log.warning(
                "metric %s not recorded (%s: %s); further failures are silent", name, type(e).__name__, e
            )


def inc(name: str, value: float = 1.0, *, run: str, **tags: Any) -> None:
    """Add ``value`` (> 0; zero or less is skipped, as Ray refuses it) to counter ``name``."""
    if value > 0:
        _record("inc", name, value, run, tags)


def set_gauge(name: str, value: float | None, *, run: str, **tags: Any) -> None:
    """Set gauge ``name``; ``None`` is skipped (a value not known here)."""
    if value is not None:
        _record("set", name, value, run, tags)


def observe(name: str, value: float, *, run: str, **tags: Any) -> None:
    """Record one observation of histogram ``name``."""
    _record("observe", name, value, run, tags)


def count_teacher_statuses(rows: list[dict[str, Any]], run: str, route: str = "online") -> None:
    """The teacher counters for status rows just recorded: once per row, on the driver, so the
    scraped totals are ``summary.json``'s (``requests_this_run``, ``tokens.this_run``, ``cost_usd.this_run``)."""
    if not rows or not enabled():
        return
    for outcome, n in Counter(str(s["status"]) for s in rows).items():
        inc("scotd_teacher_requests_total", n, run=run, outcome=outcome)
    ok = [s for s in rows if s["status"] == "ok"]
    inc("scotd_teacher_tokens_total", sum(int(s["prompt_tokens"]) for s in ok), run=run, kind="prompt")
    inc(
        "scotd_teacher_tokens_total", sum(int(s["completion_tokens"]) for s in ok), run=run, kind="completion"
    )
    inc("scotd_teacher_cost_usd_total", sum(float(s["cost_usd"]) for s in ok), run=run, route=route)
    inc("scotd_teacher_ledger_records_total", len(ok), run=run)
