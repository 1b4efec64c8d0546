"""The standing of one stage's directory: a teacher sample run, a corpus, a training run, an evaluation.

Each reader takes what ``read.read_status`` found (the directory's ``Reader``, its lock holder, its
resolved config) and reads only the files the stage itself writes (``scotd.artifacts``). A file
that is missing means "not yet"; one that is torn shows as ``?``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from scotd.artifacts import Evaluation, StudentRun, TeacherSamples, TrainingSet
from scotd.outlock import Holder
from scotd.status.model import Reader, RunStatus, count, duration, get, number, percent, share
from scotd.teacher.ledger import BATCHES, FAILURES, RESPONSES

# A live teacher run writes its summary at the end: until then its spend is summed from the
# ledger's records, when there are few enough to read at a glance.
LEDGER_SPEND_MAX_RECORDS = {"local": 5000, "remote": 300}


def state_of(holder: Holder | None, finished: bool, failed: bool, anything: bool) -> str:
    """A live holder wins; then a recorded failure; then a recorded finish; else how far it got."""
    if holder is not None and holder.live:
        return "running"
    if failed:
        return "failed"
    if finished:
        return "finished"
    return "incomplete" if anything else "empty"


def stopped_note(holder: Holder | None) -> str:
    """Why a directory that nobody holds has no final record."""
    if holder is not None and not holder.live:
        who = holder.command or "its run"
        return f"not finished: {who} (pid {holder.pid or '?'}) died without releasing it (killed?)"
    return "not running and not finished: it stopped early (failed, killed or interrupted)"


def error_text(row: dict[str, Any]) -> str:
    """One errors.jsonl / failure record as a line: its kind, key and reason."""
    parts = [str(row.get("kind") or "error")]
    if row.get("key"):
        parts.append(str(row["key"])[:12])
    if row.get("source") is not None and row.get("line") is not None:
        parts.append(f"{row['source']}:{row['line']}")
    for k in ("error", "reason", "detail", "problems", "reasons"):
        v = row.get(k)
        if v:
            parts.append(", ".join(map(str, v)) if isinstance(v, list) else str(v))
            break
    return ": ".join(parts)[:300]


# ── scotd sample ─────────────────────────────────────────────────────────────────────────────────


def planned_requests(
    summary: dict[str, Any] | None, cfg: dict[str, Any] | None, live: bool
) -> tuple[int | None, bool]:
    """Requests the run plans, and whether that is an estimate: the summary's count (of a finished
    run), else questions x requests per question from the config (identical prompts share a key,
    so a few fewer), else unknown."""
    from_summary = number(get(summary, "requests_planned"))
    if from_summary is not None and not live:
        return int(from_summary), False
    limit, n, max_n = number(get(cfg, "limit")), number(get(cfg, "n")), number(get(cfg, "teacher", "max_n"))
    if limit is not None and n is not None:
        per_question = math.ceil(n / max_n) if max_n else 1
        return int(limit) * per_question, True
    return (int(from_summary), False) if from_summary is not None else (None, False)


def _ledger_spend(ledger: Reader, records: list[str]) -> float | None:
    """USD of the priced records, when there are few enough to read now."""
    if len(records) > LEDGER_SPEND_MAX_RECORDS["local" if ledger.loc.is_local else "remote"]:
        return None
    total = 0.0
    for rel in records:
        total += number(get(ledger.json(rel), "cost_usd")) or 0.0
    return round(total, 6)


def sample_status(r: Reader, holder: Holder | None, cfg: dict[str, Any] | None, now: float) -> RunStatus:
    live = holder is not None and holder.live
    summary = r.json(TeacherSamples.SUMMARY)
    ledger = r.child(TeacherSamples.LEDGER)
    answered = ledger.files(RESPONSES, ".json")
    failures = ledger.files(FAILURES, ".json")
    phases = Counter(str(get(ledger.json(f.path), "phase") or "?") for f in ledger.files(BATCHES, ".json"))
    planned, estimated = planned_requests(summary, cfg, live)
    complete = get(summary, "complete")
    budget_stop = get(summary, "budget_stop")
    done = len(answered)

    text = f"{done:,}/{'~' if estimated else ''}{count(planned)} requests answered{share(done, planned)}"
    if failures and not (summary and not live):
        text += f", {len(failures):,} failed so far (bought again on resume)"
    if phases:
        text += (
            f"; batches: {sum(phases.values())} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))
            + ")"
        )
    if summary and not live:
        samples, acc = number(summary.get("samples")), summary.get("teacher_accuracy")
        text += f"; {count(samples)} chains, teacher accuracy {percent(acc)}"
    if cfg and cfg.get("dry_run") and not answered and not live:
        text = "dry run: priced, nothing bought"

    notes: list[str] = []
    spend: float | None = number(get(summary, "cost_usd", "total")) if summary and not live else None
    if spend is None and answered:
        spend = _ledger_spend(ledger, [f.path for f in answered])
        if spend is not None:
            notes.append(f"spend summed from {done:,} ledger records (the summary comes at the end)")
    eta = None
    if live and planned is not None and holder is not None and holder.since:
        since = holder.since
        recent = [f for f in answered if f.mtime is not None and f.mtime >= since]
        if recent and now > since:
            eta = max(0, planned - done) / (len(recent) / (now - since))

    # A live run's summary and error log are the previous run's: its failures are in the ledger.
    last_error = None
    if budget_stop and not live:
        last_error = f"budget stop: {budget_stop}"
    errors = [] if live else r.jsonl(TeacherSamples.ERRORS)
    if last_error is None and errors:
        last_error = f"{error_text(errors[-1])} ({len(errors):,} rows in {TeacherSamples.ERRORS})"
    if last_error is None and failures:
        newest = max(failures, key=lambda f: f.mtime or 0.0)
        last_error = error_text(ledger.json(newest.path) or {"kind": "request", "error": "?"})
    if last_error is None and complete is False and not live:
        last_error = f"requests never answered: {get(summary, 'requests_missing') or '?'}"

    finished = complete is True or bool(cfg and cfg.get("dry_run") and not answered)
    failed = summary is not None and (complete is False or bool(budget_stop))
    state = state_of(holder, finished, failed, anything=bool(answered or summary or cfg))
    if state == "incomplete":
        notes.append(stopped_note(holder) + "; the same command resumes: paid answers are kept")
    facts = {
        "answered": done,
        "planned": planned,
        "planned_is_estimate": estimated,
        "failed_requests": len(failures),
        "batches": dict(phases),
        "samples": get(summary, "samples"),
        "teacher_accuracy": get(summary, "teacher_accuracy"),
        "complete": complete,
    }
    return RunStatus(
        path=r.loc.uri,
        kind="sample",
        state=state,
        holder=holder,
        progress=text,
        done=done,
        total=planned,
        unit="requests",
        facts=facts,
        spend_usd=spend,
        budget_usd=number(get(cfg, "budget", "max_cost_usd")),
        eta_s=eta,
        last_error=last_error,
        notes=notes,
    )


# ── scotd corpus ─────────────────────────────────────────────────────────────────────────────────


def corpus_status(r: Reader, holder: Holder | None, cfg: dict[str, Any] | None, now: float) -> RunStatus:
    stats = r.json(TrainingSet.STATS)
    has_train = r.exists(TrainingSet.TRAIN)
    kept = number(get(stats, "kept"))
    if stats:
        text = (
            f"{count(kept)} training rows from {count(number(stats.get('samples_in')))} chains; "
            f"{count(number(stats.get('questions_kept')))}/{count(number(stats.get('questions_in')))} "
            f"questions; mode {stats.get('mode') or '?'}, {stats.get('variant') or '?'}"
        )
    else:
        text = "? training rows" if has_train else "no training set yet"
    state = state_of(
        holder, finished=bool(stats and has_train), failed=False, anything=bool(has_train or cfg)
    )
    return RunStatus(
        path=r.loc.uri,
        kind="corpus",
        state=state,
        holder=holder,
        progress=text,
        done=kept,
        unit="rows",
        facts={"kept": kept, "dropped": get(stats, "dropped"), "mode": get(stats, "mode")},
        notes=[stopped_note(holder)] if state == "incomplete" else [],
    )


# ── scotd distill ────────────────────────────────────────────────────────────────────────────────


def _rate(steps: list[dict[str, Any]], rows: list[dict[str, Any]]) -> float | None:
    """Steps per wall second since the last (re)start: checkpoints and evaluations included."""
    starts = [number(r.get("time")) for r in rows if r.get("event") == "resume"]
    since = max((t for t in starts if t is not None), default=0.0)
    timed = [(number(s.get("step")), number(s.get("time"))) for s in steps]
    recent = [(a, t) for a, t in timed if a is not None and t is not None and t >= since]
    if len(recent) >= 2 and recent[-1][1] > recent[0][1]:
        return (recent[-1][0] - recent[0][0]) / (recent[-1][1] - recent[0][1])
    return number(steps[-1].get("steps_per_s")) if steps else None


def distill_status(r: Reader, holder: Holder | None, cfg: dict[str, Any] | None, now: float) -> RunStatus:
    summary = r.json(StudentRun.SUMMARY)
    rows = r.jsonl(StudentRun.METRICS)
    steps = [x for x in rows if "event" not in x and "loss" in x]
    exported = get(r.child(StudentRun.EXPORT).json(StudentRun.EXPORT_MARKER), "step")
    checkpoints = [f for f in r.files(suffix=StudentRun.TRAINER_STATE) if f.path != StudentRun.TRAINER_STATE]
    newest = max(checkpoints, key=lambda f: f.mtime or 0.0, default=None)
    ckpt_step = number(get(r.json(newest.path), "step")) if newest else None
    max_steps = number(get(cfg, "max_steps"))
    live = holder is not None and holder.live
    status = get(summary, "status") if not live else None  # a live run's summary is a previous run's
    candidates = [number(steps[-1].get("step")) if steps else None, ckpt_step]
    if status == "finished":
        candidates.append(number(get(summary, "final_step")))
    step = max((c for c in candidates if c is not None), default=None)
    last = steps[-1] if steps else {}
    loss, sps = number(last.get("loss")), number(last.get("steps_per_s"))
    age = now - newest.mtime if newest and newest.mtime else None

    if status == "finished":
        first, final = number(get(summary, "train_loss_first")), number(get(summary, "train_loss_last"))
        val = number(get(summary, "val_loss_last"))
        text = f"step {count(step)}/{count(max_steps)}, loss "
        text += f"{first:.3f} → {final:.3f}" if first is not None and final is not None else "?"
        text += f", val {val:.3f}" if val is not None else ""
        text += f", exported at step {exported}" if exported is not None else ", export ?"
    else:
        text = f"step {count(step)}/{count(max_steps)}{share(step, max_steps)}"
        text += f", loss {loss:.4f}" if loss is not None else ", loss ?"
        text += f", {sps:.2f} steps/s" if sps is not None else ""
        if newest:
            text += f", checkpoint {duration(age)} old (step {count(ckpt_step)})"
        else:
            text += ", no checkpoint yet"
        text += f", exported at step {exported}" if exported is not None else ""
    resumes = [x.get("step") for x in rows if x.get("event") == "resume"]
    if resumes:
        text += f"; resumed at step{'s' if len(resumes) > 1 else ''} {', '.join(map(str, resumes))}"

    eta = None
    rate = _rate(steps, rows)
    if live and rate and step is not None and max_steps is not None:
        since_last = now - (number(last.get("time")) or now)
        eta = max(0.0, (max_steps - step) / rate - since_last)
    failed = bool(status) and status != "finished"
    last_error = (str(get(summary, "error") or f"training ended with status {status!r}")) if failed else None
    state = state_of(
        holder, status == "finished", failed, anything=bool(rows or checkpoints or summary or cfg)
    )
    notes = []
    if state == "incomplete":
        notes.append(stopped_note(holder) + "; the same command resumes from the newest checkpoint")
    facts = {
        "step": step,
        "max_steps": max_steps,
        "loss": loss,
        "steps_per_s": sps,
        "checkpoint_step": ckpt_step,
        "checkpoint_age_s": round(age, 1) if age is not None else None,
        "exported_step": exported,
        "resumed_at_steps": resumes,
    }
    return RunStatus(
        path=r.loc.uri,
        kind="distill",
        state=state,
        holder=holder,
        progress=text,
        done=step,
        total=max_steps,
        unit="steps",
        facts=facts,
        eta_s=eta,
        last_error=last_error,
        notes=notes,
    )


# ── scotd eval ───────────────────────────────────────────────────────────────────────────────────


def accuracies(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Greedy and the largest K's majority-vote accuracy entries (``{"accuracy", "ci95"}``)."""
    out: dict[str, Any] = {}
    if isinstance(get(metrics, "greedy"), dict):
        out["greedy"] = get(metrics, "greedy")
    curve = get(metrics, "sampled", "maj_at_k")
    if isinstance(curve, dict) and curve:
        try:
            k = max(curve, key=int)
        except ValueError:
            k = None
        if k is not None and isinstance(curve[k], dict):
            out[f"maj@{k}"] = curve[k]
    return out


def accuracy_text(metrics: dict[str, Any] | None, ci: bool = True) -> str:
    parts = []
    for name, m in accuracies(metrics).items():
        cell = f"{name} {percent(m.get('accuracy'))}"
        lo_hi = m.get("ci95")
        if ci and isinstance(lo_hi, list) and len(lo_hi) == 2 and all(number(x) is not None for x in lo_hi):
            cell += f" [{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}]"
        parts.append(cell)
    return ", ".join(parts) or "accuracy ?"


def eval_status(r: Reader, holder: Holder | None, cfg: dict[str, Any] | None, now: float) -> RunStatus:
    metrics = r.json(Evaluation.METRICS)
    planned = number(get(cfg, "limit"))
    scored = number(get(metrics, "questions"))
    live = holder is not None and holder.live
    if metrics and not live:
        text = f"{count(scored)}/{count(planned or scored)} questions scored; {accuracy_text(metrics)}"
    else:
        text = f"?/{count(planned)} questions scored (an evaluation writes its results when it ends)"
    has_predictions = r.exists(Evaluation.PREDICTIONS)
    state = state_of(holder, metrics is not None, False, anything=bool(has_predictions or cfg))
    return RunStatus(
        path=r.loc.uri,
        kind="eval",
        state=state,
        holder=holder,
        progress=text,
        done=scored if metrics and not live else None,
        total=planned or scored,
        unit="questions",
        facts={
            "questions": scored,
            "planned": planned,
            **{k: get(v, "accuracy") for k, v in accuracies(metrics).items()},
        },
        notes=[stopped_note(holder)] if state == "incomplete" else [],
    )


READERS = {"sample": sample_status, "corpus": corpus_status, "distill": distill_status, "eval": eval_status}
