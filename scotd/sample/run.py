"""The sampling stage's driver: plan, resume from the ledger, buy the rest on Ray Data, build the corpus.

Outputs under ``cfg.out_dir()`` (a local path or an object-storage URI):
a ``TeacherSamples`` (``scotd.artifacts``): ``ledger/`` (raw paid responses, the source of truth),
the samples (one row per chain), the summary, the error log (rejected input rows, failed requests,
odd answers and quarantined ledger records), ``config.yaml``. Every file is written atomically, and the
directory is locked for the run (``scotd.outlock``): a second run on it refuses at once.

On start the ledger is read back and healed: an unreadable record (empty, torn, not JSON) is
quarantined and its request bought again; a stored answer that holds no answer is set aside and
bought again (bounded, see ``actors.MAX_UNUSABLE_ANSWERS``); a record stored raw by a run that
died before pricing it is priced now.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from scotd import metrics, storage
from scotd.artifacts import SampleEstimate, SampleSummary, TeacherSamples
from scotd.config import write_resolved
from scotd.outlock import output_lock
from scotd.sample import records
from scotd.sample.config import SampleConfig
from scotd.sample.plan import PlannedRequest, plan_requests
from scotd.tasks import load_task
from scotd.teacher.ledger import Ledger
from scotd.teacher.prices import Price

log = logging.getLogger(__name__)


class TeacherAuthError(RuntimeError):
    """The endpoint refused our credentials: the run stops before (or as soon as) it would spend."""


class TeacherUnreachable(RuntimeError):
    """The endpoint does not answer at all: fail before any cluster time is spent."""


def estimate(todo: list[PlannedRequest], price: Price) -> dict[str, Any]:
    prompt = sum(p.est_prompt_tokens for p in todo)
    completion = sum(p.request.n * p.request.max_tokens for p in todo)
    return {
        "requests": len(todo),
        "samples": sum(p.request.n for p in todo),
        "est_prompt_tokens": prompt,
        "max_completion_tokens": completion,
        "max_cost_usd": round(price.cost(prompt, completion), 6),
        "price_known": price.known,
    }


def choose_route(cfg: SampleConfig, requests: int) -> str:
    """``teacher.route``, with ``auto`` resolved: batch when the endpoint offers it and the run is big."""
    if cfg.teacher.route != "auto":
        return cfg.teacher.route
    if requests < cfg.batch.auto_min_requests:
        log.info(
            "route auto: %d requests < batch.auto_min_requests=%d: online",
            requests,
            cfg.batch.auto_min_requests,
        )
        return "online"
    from scotd.sample.batches import offered

    chosen = "batch" if offered(cfg) else "online"
    log.info("route auto: %d requests; the endpoint %s a Batch API: %s", requests,
             "offers" if chosen == "batch" else "does not offer", chosen)  # fmt: skip
    return chosen


def dry_run_routes(cfg: SampleConfig, todo: list[PlannedRequest], price: Price) -> dict[str, Any]:
    """The dry run's costs per route, with the prompt cache, and what a fixed order would share."""
    from scotd import prompts
    from scotd.sample.batchplan import route_costs
    from scotd.teacher.tokens import counter_for

    counter = counter_for(cfg.teacher.model, cfg.teacher.tokenizer)
    fixed = None
    if cfg.prompt_order == "shuffled" and todo:
        ex = todo[0].example
        pset = prompts.load_prompt_set(cfg.prompt_set or prompts.default_prompt_set_name(ex.task))
        text = prompts.teacher_prefix(ex, pset, "fixed")
        fixed = counter.length(text) if counter.encode_len else len(text.encode("utf-8")) // 4
    return route_costs(todo, price, counter, cfg.teacher.cache_min_tokens, fixed)


def spend(price: Price, stored: list[dict[str, Any]]) -> dict[str, Any]:
    """``cost_split`` (USD by token kind and by route) and ``cache`` (prompt-cache hits) of the records."""
    parts = dict.fromkeys(("uncached_input", "cached_input", "output", "online", "batch"), 0.0)
    prompt = cached = 0
    for rec in stored:
        usage = rec.get("usage") or {}
        p, c, k = (
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            int(usage.get("cached_tokens", 0)),
        )
        batch = rec.get("route") == "batch"
        for part, usd in price.split(p, c, k, batch).items():
            parts[part] += usd
        parts["batch" if batch else "online"] += float(rec.get("cost_usd", 0.0))
        prompt, cached = prompt + p, cached + k
    return {
        "cost_split": {k: round(v, 6) for k, v in parts.items()},
        "cache": {
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "hit_share": round(cached / prompt, 4) if prompt else 0.0,
        },
    }


def status(cfg: SampleConfig) -> str:
    """``scotd sample --status``: the batches of the run in ``cfg.out_dir()``."""
    from scotd.sample.batches import status_table

    return status_table(cfg, Ledger(TeacherSamples(storage.location(cfg.out_dir()).uri).ledger_uri))


def preflight(cfg: SampleConfig, secret: str | None) -> None:
    """A free call (``GET /models``) that catches a bad key or a dead endpoint before any spend."""
    import openai

    client = openai.OpenAI(
        base_url=cfg.teacher.base_url, api_key=secret or "EMPTY", max_retries=0, timeout=15.0
    )
    env = cfg.teacher.api_key_env
    try:
        client.models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        hint = f"${env} is not set" if not secret else f"check the key in ${env}"
        raise TeacherAuthError(
            f"the teacher at {cfg.teacher.base_url} refused the credentials (HTTP {e.status_code}); {hint}. "
            "Nothing was requested."
        ) from None
    except openai.APIConnectionError as e:
        raise TeacherUnreachable(
            f"cannot reach the teacher at {cfg.teacher.base_url} ({type(e).__name__}); is the server running "
            "and is teacher.base_url right? Nothing was requested."
        ) from None
    except openai.APIStatusError:
        pass  # some endpoints have no /models; the real calls will tell


def load_ledger(ledger: Ledger, unique: dict[str, PlannedRequest], price: Price) -> dict[str, dict[str, Any]]:
    """The usable, priced records of the planned keys; heals the ledger on the way (see module doc).

    Raises ``storage.StorageReadError`` when a record exists but cannot be read even after retries:
    buying it again could pay twice for an answer that is there.
    """
    stored: dict[str, dict[str, Any]] = {}
    for key in sorted(ledger.keys() & unique.keys()):
        record = ledger.get(key)
        if record is None:  # quarantined
            continue
        p = unique[key]
        seen = records.view(record, p.request.n)
        if seen.body is None:
            ledger.set_aside_unusable(key, record, seen.unusable)
            continue
        if not isinstance(record.get("usage"), dict) or "cost_usd" not in record:
            record = records.settle(
                record, seen, price, p.est_prompt_tokens, p.request.n, p.request.max_tokens
            )
            ledger.put(key, record)
        stored[key] = record
    return stored


def run_sample(cfg: SampleConfig) -> TeacherSamples:
    """Plan, resume, buy and build the corpus; holds ``cfg.out_dir()`` for the whole run.

    Raises ``outlock.OutputLocked`` at once when another run holds the directory.
    """
    out = storage.location(cfg.out_dir())
    with output_lock(out.uri, f"scotd sample {cfg.task}/{cfg.split}"):
        return _run_sampling(cfg, out)


def _run_sampling(cfg: SampleConfig, out: storage.Location) -> TeacherSamples:
    started = time.time()
    secret = os.environ.get(cfg.teacher.api_key_env) or None
    loaded = load_task(cfg.task, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
    if not loaded.examples:
        raise ValueError(
            f"{cfg.task}/{cfg.split} has no valid examples ({len(loaded.rejected)} rows rejected)"
        )
    planned = plan_requests(loaded.examples, cfg)
    unique = {p.key: p for p in planned}
    samples = TeacherSamples(out.uri)
    ledger = Ledger(samples.ledger_uri)
    price = cfg.price()
    stored = load_ledger(ledger, unique, price)
    done = set(stored)
    todo = [p for k, p in unique.items() if k not in done]
    plan_estimate = estimate(todo, price)
    write_resolved(cfg, out.uri)
    log.info(
        "%s/%s: %d questions, %d requests planned, %d already in the ledger, %d to buy",
        cfg.task,
        cfg.split,
        len(loaded.examples),
        len(unique),
        len(done),
        len(todo),
    )
    if cfg.dry_run:
        estimate_only = SampleEstimate(
            questions=len(loaded.examples),
            already_in_ledger=len(done),
            **plan_estimate,
            routes=dry_run_routes(cfg, todo, price),
        )
        return TeacherSamples(out.uri, estimate_only)
    if not price.known:
        log.warning(
            "no price known for model %r: cost shows as $0 (set budget.*_price_per_1k)", cfg.teacher.model
        )

    statuses: list[dict[str, Any]] = []
    limiter_stats: dict[str, Any] = {}
    batch_report: dict[str, Any] = {}
    route = "online"
    sampling_s = 0.0
    if todo:
        preflight(cfg, secret)
        from scotd.sample.dataflow import buy

        prior_cost = sum(float(rec["cost_usd"]) for rec in stored.values())
        prior_tokens = sum(
            int(rec["usage"].get(t, 0))
            for rec in stored.values()
            for t in ("prompt_tokens", "completion_tokens")
        )
        unusable_before = {k: len(v) for k, v in ledger.unusable().items()}
        run_id = hashlib.sha256(out.uri.encode()).hexdigest()[:12]
        t0 = time.time()
        online = todo
        route = choose_route(cfg, len(todo))
        if route == "batch":
            from scotd.sample.batches import BatchRoute

            outcome = BatchRoute(cfg, ledger, price, unique).run(todo, prior_cost, prior_tokens)
            batch_report = asdict(outcome)
            batch_report.pop("statuses")
            statuses += outcome.statuses
            metrics.count_teacher_statuses(outcome.statuses, metrics.run_tag(cfg.out_dir()), route="batch")
            for key, why in outcome.gave_up.items():
                ledger.put_failure(key, {"key": key, "kind": "batch", "error": why, "at": time.time()})
            online = [unique[k] for k in outcome.retry_online]
            prior_cost += sum(s["cost_usd"] for s in outcome.statuses)
            prior_tokens += sum(s["prompt_tokens"] + s["completion_tokens"] for s in outcome.statuses)
        if online and not (batch_report.get("budget_stop") or batch_report.get("rejected")):
            more, limiter_stats = buy(
                cfg, online, ledger, price, run_id, prior_cost, prior_tokens, unusable_before
            )
            statuses += more
        sampling_s = time.time() - t0

    samples = _finish(
        cfg,
        samples,
        ledger,
        planned,
        loaded,
        statuses,
        limiter_stats,
        sampling_s,
        started,
        plan_estimate,
        stored,
        route,
        batch_report,
    )
    if limiter_stats.get("aborted"):
        raise TeacherAuthError(
            f"the teacher refused the credentials mid-run ({limiter_stats['aborted']}); check ${cfg.teacher.api_key_env}. "
            f"Everything already paid for is in {samples.ledger_uri}; re-run to resume."
        )
    return samples


def _finish(
    cfg: SampleConfig,
    samples: TeacherSamples,
    ledger: Ledger,
    planned: list[PlannedRequest],
    loaded: Any,
    statuses: list[dict[str, Any]],
    limiter_stats: dict[str, Any],
    sampling_s: float,
    started: float,
    plan_estimate: dict[str, Any],
    stored: dict[str, dict[str, Any]],
    route: str = "online",
    batch_report: dict[str, Any] | None = None,
) -> TeacherSamples:
    """Build the samples from the ledger; write them with the summary and the error log."""
    rows: list[dict[str, Any]] = []
    cache: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}
    odd: dict[str, list[str]] = {}
    samples_missing = 0
    for p in planned:
        if p.key not in cache:
            rec = stored.get(p.key) or ledger.get(p.key)
            cache[p.key] = (rec, None if rec else ledger.get_failure(p.key))
            if rec is not None:
                seen = records.view(rec, p.request.n)
                problems = list(seen.problems) if seen.body is not None else ["unusable"]
                samples_missing += max(0, p.request.n - seen.choices)
                if problems:
                    odd[p.key] = problems
        rows.extend(records.rows_for_request(p, *cache[p.key]))
    unusable = {k: v for k, v in ledger.unusable().items() if k in cache}

    answered = [r for r in rows if r["error"] is None]
    labeled = [r for r in answered if r["correct"] is not None]
    per_example = Counter(r["example_id"] for r in answered)
    status_counts = Counter(s["status"] for s in statuses)
    ok = [s for s in statuses if s["status"] == "ok"]
    usage_all = [rec.get("usage", {}) for rec, _ in cache.values() if rec]
    # Rates over the active window (first grant to last paid answer), not Ray start-up.
    active_s = float(limiter_stats.get("last_ok_at", 0.0)) - float(limiter_stats.get("first_grant_at", 0.0))
    minutes = max(active_s, 1e-9) / 60
    run_tokens = sum(s["prompt_tokens"] + s["completion_tokens"] for s in ok)
    summary = {
        "task": cfg.task,
        "split": cfg.split,
        "teacher_model": cfg.teacher.model,
        "questions": len(loaded.examples),
        "input_rows_rejected": loaded.rejected_by_reason(),
        "requests_planned": len(cache),
        "requests_in_ledger": sum(1 for rec, _ in cache.values() if rec),
        "requests_this_run": {
            "made": len(ok),
            "attempts": sum(s["attempts"] for s in statuses),
            "retried": sum(max(0, s["attempts"] - 1) for s in statuses),
            "by_status": dict(sorted(status_counts.items())),
            "rate_limited_429": int(limiter_stats.get("rate_limited", 0)),
        },
        "requests_missing": {
            reason: n
            for reason, n in Counter(
                (fail or {}).get("kind", "not_requested") for rec, fail in cache.values() if rec is None
            ).items()
        },
        "tokens": {
            "prompt": sum(u.get("prompt_tokens", 0) for u in usage_all),
            "completion": sum(u.get("completion_tokens", 0) for u in usage_all),
            "this_run": run_tokens,
        },
        "cost_usd": {
            "total": round(sum((rec or {}).get("cost_usd", 0.0) for rec, _ in cache.values()), 6),
            "this_run": round(sum(s["cost_usd"] for s in ok), 6),
        },
        "wall_s": round(time.time() - started, 2),
        "sampling_s": round(sampling_s, 2),
        "active_s": round(max(active_s, 0.0), 2),
        "achieved_rpm": round(len(ok) / minutes, 1) if ok else 0.0,
        "achieved_tpm": round(run_tokens / minutes, 1) if ok else 0.0,
        "limits": {
            "rpm": limiter_stats.get("rpm_limit", cfg.limits.rpm),
            "tpm": limiter_stats.get("tpm_limit", cfg.limits.tpm),
        },
        "samples": len(answered),
        "samples_per_example": {
            "mean": round(len(answered) / max(1, len(loaded.examples)), 3),
            "min": min((per_example.get(ex.id, 0) for ex in loaded.examples), default=0),
            "max": max(per_example.values(), default=0),
        },
        "parse_rate": round(sum(r["pred_label"] is not None for r in answered) / len(answered), 4)
        if answered
        else 0.0,
        "parse_errors": dict(Counter(r["parse_error"] for r in answered if r["parse_error"])),
        "teacher_accuracy": round(sum(bool(r["correct"]) for r in labeled) / len(labeled), 4)
        if labeled
        else None,
        "odd_responses": {
            **dict(sorted(Counter(p for problems in odd.values() for p in problems).items())),
            "samples_missing": samples_missing,
            "usage_estimated": sum(1 for rec, _ in cache.values() if rec and rec.get("usage_estimated")),
            "unusable_set_aside": sum(len(v) for v in unusable.values()),
            "unusable_this_run": sum(int(s.get("unusable", 0)) for s in statuses),
        },
        "ledger_quarantined": list(ledger.quarantined),
        "budget_stop": (batch_report or {}).get("budget_stop") or limiter_stats.get("budget_stopped") or None,
        "complete": all(rec is not None for rec, _ in cache.values()),
        "estimate_before_run": plan_estimate,
        "route": route,
        "batches": batch_report or {},
        **spend(cfg.price(), [rec for rec, _ in cache.values() if rec]),
    }
    errors = _error_log(loaded, cache, odd, unusable, ledger)
    return samples.write(records.corpus_table(rows), SampleSummary(**summary), errors)


def _error_log(
    loaded: Any,
    cache: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]],
    odd: dict[str, list[str]],
    unusable: dict[str, list[str]],
    ledger: Ledger,
) -> list[dict[str, Any]]:
    """One record per problem: rejected input rows, failed requests, odd and unusable answers, torn records."""
    errors: list[dict[str, Any]] = [
        {"kind": "input_row", "source": e.source, "line": e.line, "reason": e.reason, "detail": e.detail}
        for e in loaded.rejected
    ]
    errors += [
        {"kind": "request", "key": k, **(fail or {})}
        for k, (rec, fail) in cache.items()
        if rec is None and fail
    ]
    errors += [{"kind": "odd_response", "key": k, "problems": v} for k, v in odd.items()]
    errors += [{"kind": "unusable_response", "key": k, "reasons": v} for k, v in unusable.items()]
    errors += [{"kind": "quarantined_record", **q} for q in ledger.quarantined]
    return errors
