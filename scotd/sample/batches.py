"""The batch route of ``scotd sample``: the provider's Batch API, with the online route's ledger.

Each batch has a durable record, ``<ledger>/batches/<id>.json`` (``BatchRecord``), written before
every step that depends on it, so a re-run after ``kill -9`` at any point resumes the batch
instead of paying for it twice:

=========  ====================================================================================
phase      what is durable, and how a lost write is recovered
=========  ====================================================================================
planned    the request keys the batch covers; a key in a live (not ended) batch is never
           planned again, and a key already in the ledger never is
uploaded   the input file's id. The file is named ``scotd-<id>.jsonl``: a re-run that finds no id
           looks for that name among the provider's files before uploading again
created    the provider's batch id, after the batch's worst-case cost was reserved against the
           budget (a create that would pass ``budget.max_cost_usd`` is not sent). The batch carries
           ``metadata.scotd_batch=<id>``: a re-run that finds no id looks for it among the
           provider's batches before creating again
ended      terminal at the provider (completed, failed, expired, cancelled); every answer is in
           the ledger (stored raw first, then priced at the batch price), every line the provider
           failed or did not finish is listed, to be re-bought at most ``batch.max_line_retries``
           times (online or in a new batch, ``batch.retry_route``)
=========  ====================================================================================

Polling is bounded by ``batch.max_wait_s``: past it the run stops resumably (the batches keep
running at the provider; the next run collects them). A batch the provider rejects at creation
(e.g. its queued-token limit) ends with no line bought; its lines wait for the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm

from scotd import storage
from scotd.sample import records
from scotd.sample.batchplan import ENDPOINTS, batch_line, reserve, split_batches
from scotd.sample.config import SampleConfig
from scotd.sample.plan import PlannedRequest, request_to_json
from scotd.teacher.ledger import BATCHES, Ledger
from scotd.teacher.prices import Price

log = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "expired", "cancelled")
METADATA_KEY = "scotd_batch"
LIST_PAGES = 20  # at most this many pages of 100 are searched for a lost upload or batch


@dataclass
class BatchRecord:
    id: str
    keys: list[str]
    phase: str = "planned"  # planned | uploaded | created | ended
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # the provider's last status
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    planned_at: float = 0.0
    ended_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)  # ok / failed / unfinished lines
    failed: list[str] = field(default_factory=list)  # keys to re-buy: the provider failed them
    unfinished: list[str] = field(default_factory=list)  # keys to re-buy: expired / cancelled / rejected
    errors: list[str] = field(default_factory=list)  # the provider's batch-level errors

    @property
    def live(self) -> bool:
        return self.phase != "ended"


class BatchStore:
    """The batch records of one run, beside its ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.root = ledger.root.child(BATCHES)

    def put(self, rec: BatchRecord) -> None:
        storage.write_bytes(self.root, f"{rec.id}.json", json.dumps(asdict(rec), sort_keys=True).encode())

    def all(self) -> list[BatchRecord]:
        out = []
        for rel in storage.list_files(self.root, suffix=".json"):
            data = storage.read_bytes(self.root, rel)
            try:
                out.append(BatchRecord(**json.loads(data or b"")))
            except (ValueError, TypeError) as e:  # torn: its keys are re-planned once it is gone
                log.warning("batch record %s/%s is unreadable (%s); ignoring it", self.root.uri, rel, e)
        return sorted(out, key=lambda r: r.planned_at)


@dataclass
class BatchOutcome:
    """What the batch route did in this run, for the summary and the caller."""

    statuses: list[dict[str, Any]] = field(default_factory=list)  # one per answer stored this run
    retry_online: list[str] = field(default_factory=list)  # keys the caller re-buys online
    gave_up: dict[str, str] = field(default_factory=dict)  # key -> why (retries exhausted)
    budget_stop: str | None = None
    waiting: list[str] = field(default_factory=list)  # batch ids still running at the provider
    rejected: list[str] = field(default_factory=list)  # provider errors that stopped a create
    batches: dict[str, int] = field(default_factory=dict)  # provider status -> batches (all runs)


def _client(cfg: SampleConfig) -> Any:
    import openai

    from scotd import secrets

    secret = secrets.from_env(cfg.teacher.api_key_env) if cfg.teacher.api_key_env else None
    return openai.OpenAI(
        base_url=cfg.teacher.base_url,
        api_key=secret.reveal() if secret else "EMPTY",
        max_retries=cfg.teacher.max_retries,
        timeout=max(cfg.teacher.timeout_s, 60.0),
    )


def offered(cfg: SampleConfig) -> bool:
    """Whether the endpoint has a Batch API (a free ``GET /batches``; self-hosted vLLM has none)."""
    import openai

    try:
        _client(cfg).batches.list(limit=1)
    except (openai.NotFoundError, openai.APIStatusError, openai.APIConnectionError):
        return False
    return True


def _kill_if(cfg: SampleConfig, phase: str) -> None:
    if cfg.batch.fault_kill_at == phase:
        log.warning("batch.fault_kill_at=%s: SIGKILL now (testing resume)", phase)
        os.kill(os.getpid(), signal.SIGKILL)


class BatchRoute:
    def __init__(self, cfg: SampleConfig, ledger: Ledger, price: Price, unique: dict[str, PlannedRequest]):
        self.cfg, self.ledger, self.price, self.unique = cfg, ledger, price, unique
        self.store = BatchStore(ledger)
        self.client = _client(cfg)
        self.out = BatchOutcome()
        self.answered: set[str] = set()  # keys answered by this run's batches
        self.spent_usd = 0.0  # what the ledger's answers cost (before this run, then added to)
        self.spent_tokens = 0
        self.stop = False  # a provider refusal: no new batch this run

    # --- planning --------------------------------------------------------------------------

    def _retries(self, recs: list[BatchRecord]) -> Counter[str]:
        return Counter(k for r in recs if not r.live for k in (*r.failed, *r.unfinished))

    def plan(self, todo: list[PlannedRequest]) -> list[BatchRecord]:
        """New batch records for the keys not in the ledger and not in a live batch, within the budget."""
        recs = self.store.all()
        live = {k for r in recs if r.live for k in r.keys}
        tries = self._retries(recs)
        wanted = []
        for p in todo:
            if p.key in live or p.key in self.answered or p.key in self.out.retry_online:
                continue
            if tries[p.key] > self.cfg.batch.max_line_retries:
                self.out.gave_up[p.key] = f"failed or unfinished in {tries[p.key]} batches"
                continue
            if tries[p.key] and self.cfg.batch.retry_route == "online":
                self.out.retry_online.append(p.key)
                continue
            wanted.append(p)
        b = self.cfg.batch
        new: list[BatchRecord] = []
        reserved_usd = self.spent_usd + sum(r.reserved_usd for r in recs if r.live)
        reserved_tokens = self.spent_tokens + sum(r.reserved_tokens for r in recs if r.live)
        for group in split_batches(wanted, b.max_requests, b.max_file_bytes, self.cfg.teacher.omit_fields):
            group = self._within_budget(group, reserved_usd, reserved_tokens)
            if not group:
                break
            res = reserve(group, self.price)
            reserved_usd, reserved_tokens = reserved_usd + res.cost_usd, reserved_tokens + res.tokens
            keys = [p.key for p in group]
            rid = hashlib.sha256(("\n".join(keys) + f"\n{time.time_ns()}").encode()).hexdigest()[:16]
            rec = BatchRecord(
                rid, keys, reserved_usd=res.cost_usd, reserved_tokens=res.tokens, planned_at=time.time()
            )
            self.store.put(rec)  # durable before anything depends on it
            new.append(rec)
        return new

    def _within_budget(self, group: list[PlannedRequest], usd: float, tokens: int) -> list[PlannedRequest]:
        """The longest head of ``group`` whose worst case still fits the caps; sets ``budget_stop``."""
        cap_usd, cap_tokens = self.cfg.budget.max_cost_usd, self.cfg.budget.max_total_tokens
        kept: list[PlannedRequest] = []
        for p in group:
            res = reserve([p], self.price)
            if (cap_usd is not None and usd + res.cost_usd > cap_usd + 1e-12) or (
                cap_tokens is not None and tokens + res.tokens > cap_tokens
            ):
                self.out.budget_stop = (
                    f"the next batch line's worst case would pass the cap (reserved ${usd:.4f} of "
                    f"${cap_usd}, {tokens} of {cap_tokens} tokens)"
                )
                break
            usd, tokens = usd + res.cost_usd, tokens + res.tokens
            kept.append(p)
        return kept

    # --- one batch through its phases -------------------------------------------------------

    def _find(self, pager: Any, match: Any) -> Any:
        """The first provider object ``match`` accepts, over at most ``LIST_PAGES`` pages."""
        import openai

        try:
            page = pager()
            for _ in range(LIST_PAGES):
                for obj in page.data:
                    if match(obj):
                        return obj
                if not page.has_next_page():
                    return None
                page = page.get_next_page()
        except openai.APIStatusError as e:  # no listing here: the caller proceeds without it
            log.info("cannot list (HTTP %s): %s", e.status_code, e.message)
        return None

    def upload(self, rec: BatchRecord) -> None:
        name = f"scotd-{rec.id}.jsonl"
        content = "".join(batch_line(self.unique[k], self.cfg.teacher.omit_fields) + "\n" for k in rec.keys)
        data = content.encode("utf-8")
        found = self._find(
            lambda: self.client.files.list(purpose="batch"),
            lambda f: f.filename == name and int(getattr(f, "bytes", -1) or -1) == len(data),
        )
        if found is not None:
            log.info("batch %s: found its upload %s from an earlier run", rec.id, found.id)
            rec.file_id = found.id
        else:
            rec.file_id = self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch").id
            _kill_if(self.cfg, "upload")
        rec.phase = "uploaded"
        self.store.put(rec)

    def create(self, rec: BatchRecord) -> None:
        import openai

        found = self._find(
            lambda: self.client.batches.list(limit=100),
            lambda b: (b.metadata or {}).get(METADATA_KEY) == rec.id,
        )
        if found is None:
            api = self.unique[rec.keys[0]].request.api
            try:
                found = self.client.batches.create(
                    input_file_id=str(rec.file_id),
                    endpoint=ENDPOINTS[api],
                    completion_window=self.cfg.batch.completion_window,
                    metadata={METADATA_KEY: rec.id},
                )
            except openai.APIStatusError as e:  # e.g. over the queued-token limit: resumable
                self._end_unbought(rec, "refused", f"create refused (HTTP {e.status_code}): {e.message}")
                return
            _kill_if(self.cfg, "create")
        else:
            log.info("batch %s: found provider batch %s from an earlier run", rec.id, found.id)
        rec.batch_id, rec.status, rec.phase = found.id, found.status, "created"
        self.store.put(rec)

    def _end_unbought(self, rec: BatchRecord, status: str, why: str) -> None:
        """A batch that bought nothing (refused at create, or failed before any line ran, e.g. over
        the queued-token limit): its lines are not retries; they wait for the next run."""
        self.out.rejected.append(f"batch {rec.id}: {why}")
        self.stop = True
        rec.errors.append(why)
        rec.status, rec.phase, rec.ended_at = status, "ended", time.time()
        rec.counts = {"ok": 0, "failed": 0, "unfinished": 0}
        self.store.put(rec)

    def collect(self, rec: BatchRecord, batch: Any) -> None:
        """Store every answer of a terminal batch, list what failed or did not finish, end it."""
        answered: set[str] = set()
        failed: dict[str, str] = {}
        wanted = set(rec.keys)
        provider_errors = [f"{e.code}: {e.message}" for e in (getattr(batch.errors, "data", None) or [])]
        if batch.status == "failed" and not (batch.output_file_id or batch.error_file_id):
            self._end_unbought(rec, "failed", "; ".join(provider_errors) or "failed before any line ran")
            return
        lines = self._lines(batch.output_file_id) + self._lines(batch.error_file_id)
        half = len(lines) // 2
        for i, line in enumerate(lines):
            if i == half and i:
                _kill_if(self.cfg, "download")
            key, body, why = _read_line(line)
            if key not in wanted or key in answered:
                continue  # not ours, or a duplicate line: the first answer counts
            if body is None:
                failed[key] = why
                continue
            if self._store_answer(rec, key, body):
                answered.add(key)
                failed.pop(key, None)
            else:
                failed[key] = "the answer held no completion"
        rec.errors += provider_errors
        self.answered |= answered
        rec.failed = sorted(failed)
        rec.unfinished = sorted(wanted - answered - set(failed))
        rec.counts = {"ok": len(answered), "failed": len(rec.failed), "unfinished": len(rec.unfinished)}
        rec.status, rec.phase, rec.ended_at = batch.status, "ended", time.time()
        self.store.put(rec)

    def _lines(self, file_id: str | None) -> list[str]:
        if not file_id:
            return []
        return self.client.files.content(file_id).text.splitlines()

    def _store_answer(self, rec: BatchRecord, key: str, body: dict[str, Any]) -> bool:
        """Raw first (durable before anything reads it), then priced at the batch price, like online."""
        p = self.unique[key]
        if self.ledger.has(key):
            return True  # stored by an earlier, interrupted collection of this batch
        raw = json.dumps(body, ensure_ascii=False)
        record = {
            "key": key,
            "request": request_to_json(p.request),
            "http_status": 200,
            "raw_body": raw,
            "attempts": 1,
            "route": "batch",
            "batch": rec.batch_id,
            "received_at": time.time(),
        }
        self.ledger.put(key, record)
        seen = records.view(record, p.request.n)
        if seen.body is None:
            self.ledger.set_aside_unusable(key, record, seen.unusable)
            return False
        settled = records.settle(
            record, seen, self.price, p.est_prompt_tokens, p.request.n, p.request.max_tokens, batch=True
        )
        self.ledger.put(key, settled)
        usage = settled["usage"]
        self.out.statuses.append(
            {
                "key": key,
                "status": "ok",
                "error": "",
                "attempts": 1,
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"],
                "cost_usd": settled["cost_usd"],
                "anomalies": ",".join(seen.problems),
                "unusable": 0,
                "route": "batch",
            }
        )
        return True

    # --- the loop ---------------------------------------------------------------------------

    def run(self, todo: list[PlannedRequest], spent_usd: float, spent_tokens: int) -> BatchOutcome:
        """Rounds of plan → upload → create → wait → collect, until every key is answered, handed
        to the online route, given up on, over budget, or waiting at the provider (bounded)."""
        self.spent_usd, self.spent_tokens = spent_usd, spent_tokens
        for _ in range(self.cfg.batch.max_line_retries + 2):
            self.plan(todo)
            for rec in self.store.all():
                if self.stop:
                    break
                if rec.phase == "planned":
                    self.upload(rec)
                if rec.phase == "uploaded" and self._fits(rec):
                    self.create(rec)
            if not any(r.phase == "created" for r in self.store.all()):
                break
            self._wait()
            if self.stop or self.out.waiting or self.out.budget_stop:
                break
        self.out.batches = dict(Counter(r.status or r.phase for r in self.store.all()))
        return self.out

    def _fits(self, rec: BatchRecord) -> bool:
        """A batch is created only if its reservation, with the live ones, still fits the caps."""
        cap_usd, cap_tokens = self.cfg.budget.max_cost_usd, self.cfg.budget.max_total_tokens
        live = [r for r in self.store.all() if r.phase == "created"]
        usd = self.spent_usd + sum(r.reserved_usd for r in live) + rec.reserved_usd
        tokens = self.spent_tokens + sum(r.reserved_tokens for r in live) + rec.reserved_tokens
        if (cap_usd is not None and usd > cap_usd + 1e-12) or (
            cap_tokens is not None and tokens > cap_tokens
        ):
            self.out.budget_stop = (
                f"batch {rec.id} would pass the budget cap (worst case ${usd:.4f}); not created"
            )
            return False
        return True

    def _wait(self) -> None:
        """Poll every created batch until it ends (collecting each), or until ``max_wait_s``."""
        b = self.cfg.batch
        deadline = time.monotonic() + b.max_wait_s
        created = [r for r in self.store.all() if r.phase == "created"]
        total = sum(len(r.keys) for r in created)
        bar = tqdm(
            total=total, unit="line", desc="teacher (batch)", disable=not self.cfg.progress or not total
        )
        first = True
        try:
            while created:
                done = 0
                for rec in list(created):
                    batch = self.client.batches.retrieve(str(rec.batch_id))
                    rec.status = batch.status
                    if first:
                        _kill_if(self.cfg, "poll")
                    counts = batch.request_counts
                    done += (counts.completed + counts.failed) if counts else 0
                    if batch.status in TERMINAL:
                        before = len(self.out.statuses)
                        self.collect(rec, batch)
                        for st in self.out.statuses[before:]:
                            self.spent_usd += st["cost_usd"]
                            self.spent_tokens += st["prompt_tokens"] + st["completion_tokens"]
                        created.remove(rec)
                first = False
                bar.n = min(
                    total, done + sum(len(r.keys) for r in self.store.all() if not r.live and r.batch_id)
                )
                bar.set_postfix_str(", ".join(f"{r.id[:8]}:{r.status}" for r in created[:4]), refresh=True)
                if not created:
                    break
                if time.monotonic() > deadline:
                    self.out.waiting = [str(r.batch_id) for r in created]
                    log.warning(
                        "batch.max_wait_s=%g passed with %d batches still running at the provider; "
                        "re-run the same command to collect them (`scotd sample --status` shows them)",
                        b.max_wait_s,
                        len(created),
                    )
                    break
                time.sleep(min(b.poll_s, max(0.0, deadline - time.monotonic())) or 0.01)
        finally:
            bar.close()


def _read_line(line: str) -> tuple[str | None, dict[str, Any] | None, str]:
    """``(custom_id, body, why)`` of one output or error line; ``body`` only for a 2xx answer.
    Pure and total: an odd line is a failure with a reason, never an exception."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None, None, "not JSON"
    if not isinstance(obj, dict):
        return None, None, "not an object"
    key = obj.get("custom_id")
    key = key if isinstance(key, str) else None
    resp = obj.get("response")
    err = obj.get("error")
    if (
        isinstance(resp, dict)
        and isinstance(resp.get("status_code"), int)
        and 200 <= resp["status_code"] < 300
    ):
        body = resp.get("body")
        if isinstance(body, dict):
            return key, body, ""
        return key, None, "2xx line without a JSON body"
    if isinstance(err, dict):
        return key, None, f"{err.get('code')}: {err.get('message')}"
    if isinstance(resp, dict):
        return key, None, f"HTTP {resp.get('status_code')}"
    return key, None, "no response"


def status_table(cfg: SampleConfig, ledger: Ledger, refresh: bool = True) -> str:
    """``scotd sample --status``: the run's batches, their phases and provider states."""
    recs = BatchStore(ledger).all()
    if not recs:
        return f"no batches in {ledger.root.uri} (this run used the online route, or has not started)"
    client = _client(cfg) if refresh else None
    rows = [
        "| batch | provider id | phase | status | lines | ok | failed | unfinished | reserved $ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        status = r.status or "-"
        if client is not None and r.live and r.batch_id:
            try:
                b = client.batches.retrieve(r.batch_id)
                status = f"{b.status} ({b.request_counts.completed}/{b.request_counts.total})"
            except Exception as e:  # a status view never fails on one odd batch
                status = f"{r.status} (retrieve failed: {type(e).__name__})"
        c = r.counts
        rows.append(
            f"| {r.id} | {r.batch_id or '-'} | {r.phase} | {status} | {len(r.keys)} | {c.get('ok', '-')} | "
            f"{c.get('failed', '-')} | {c.get('unfinished', '-')} | {r.reserved_usd:.4f} |"
        )
    return "\n".join(rows)
