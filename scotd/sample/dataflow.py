"""The Ray Data part of sampling: request rows → pool of async sampler actors → status rows."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from tqdm import tqdm

from scotd import metrics, secrets
from scotd.ray_runtime import batch_rows, init_ray, require_resources
from scotd.sample.actors import NAMESPACE, RateLimiterActor, TeacherSampler
from scotd.sample.config import SampleConfig
from scotd.sample.plan import PlannedRequest, planned_rows
from scotd.teacher.ledger import Ledger
from scotd.teacher.prices import Price

log = logging.getLogger(__name__)


def buy(
    cfg: SampleConfig,
    todo: list[PlannedRequest],
    ledger: Ledger,
    price: Price,
    run_id: str,
    prior_cost_usd: float,
    prior_tokens: int,
    unusable_before: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Buy every request in ``todo`` (at most once each); return per-request statuses and limiter stats."""
    init_ray()
    require_resources(cfg.pool.resources, "pool.resources")
    import ray.data
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    budget = cfg.budget
    limiter_name = f"scotd-limiter-{run_id}"
    run = metrics.run_tag(cfg.out_dir())
    # The run's one limiter lives on the driver's node (on a cluster, the head): a lost worker node
    # must never take it, and the whole stage, with it. (num_cpus=0: any node can hold it.)
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    limiter = RateLimiterActor.options(  # type: ignore[attr-defined]
        name=limiter_name, namespace=NAMESPACE, scheduling_strategy=here
    ).remote(
        metrics_run=run,
        rpm=cfg.limits.rpm,
        tpm=cfg.limits.tpm,
        safety=cfg.limits.safety,
        burst_s=cfg.limits.burst_s,
        max_cost_usd=None if budget.max_cost_usd is None else max(0.0, budget.max_cost_usd - prior_cost_usd),
        max_total_tokens=None
        if budget.max_total_tokens is None
        else max(0, budget.max_total_tokens - prior_tokens),
    )
    ray.get(limiter.snapshot.remote())  # created and registered before any sampler looks it up
    pool = cfg.pool
    t = cfg.teacher
    rows = planned_rows(todo, price, unusable_before or {})
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), pool.num_samplers * 8)))
    statuses_ds = ds.map_batches(
        TeacherSampler,
        fn_constructor_kwargs={
            "limiter_name": limiter_name,
            "ledger_root": ledger.root.uri,
            "base_url": t.base_url,
            "api_key_env": t.api_key_env,
            "api_key": secrets.from_env(t.api_key_env),
            "timeout_s": t.timeout_s,
            "max_retries": t.max_retries,
            "max_rate_limit_retries": t.max_rate_limit_retries,
            "backoff_base_s": t.backoff_base_s,
            "backoff_max_s": t.backoff_max_s,
            "idempotency_keys": t.idempotency_keys,
            "price": dataclasses.astuple(price),
            "omit_fields": t.omit_fields,
        },
        batch_size=pool.requests_per_batch,
        compute=ray.data.ActorPoolStrategy(
            size=pool.num_samplers, max_tasks_in_flight_per_actor=pool.batches_in_flight
        ),
        num_cpus=pool.num_cpus,
        resources=pool.resources or None,
        batch_format="numpy",
    )
    statuses: list[dict[str, Any]] = []
    bar = tqdm(total=len(rows), unit="req", desc="teacher", disable=not cfg.progress, smoothing=0.1)
    last_poll = 0.0
    seen_429 = 0
    try:
        for batch in statuses_ds.iter_batches(batch_size=None, batch_format="numpy"):
            got = batch_rows(batch)
            statuses.extend(got)
            metrics.count_teacher_statuses(got, run)
            bar.update(len(got))
            if time.monotonic() - last_poll > 1.0:
                last_poll = time.monotonic()
                snap = ray.get(limiter.snapshot.remote())
                metrics.inc("scotd_teacher_rate_limited_total", int(snap["rate_limited"]) - seen_429, run=run)
                seen_429 = int(snap["rate_limited"])
                bar.set_postfix_str(_postfix(snap), refresh=False)
        stats: dict[str, Any] = ray.get(limiter.snapshot.remote())
        metrics.inc("scotd_teacher_rate_limited_total", int(stats["rate_limited"]) - seen_429, run=run)
        bar.set_postfix_str(_postfix(stats))
    finally:
        bar.close()
        ray.kill(limiter)
    if stats.get("budget_stopped"):
        log.warning(
            "stopped at the budget cap: %s. Re-run with a higher cap to resume.", stats["budget_stopped"]
        )
    return statuses, stats


def _postfix(s: dict[str, Any]) -> str:
    minutes = max(1e-9, time.time() - float(s["first_grant_at"] or s["started_at"])) / 60
    tokens = int(s["prompt_tokens"]) + int(s["completion_tokens"])
    return (
        f"rpm={int(s['ok']) / minutes:.0f} tpm={tokens / minutes:.0f} tokens={tokens} "
        f"${float(s['cost_usd']):.4f} 429s={s['rate_limited']}"
    )
