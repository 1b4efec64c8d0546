"""The Batch API's state machine: one bounded asyncio task per batch, run in small slices.

States (OpenAI's): ``validating`` (``batch_validate_s``, then every line is checked, see
``batch_lines``) -> ``in_progress`` (one line per ``batch_line_ms``; ``request_counts`` and
``usage`` grow as lines finish) -> ``finalizing`` (``batch_validate_s``) -> ``completed``. Or:

- ``failed``: a bad line (``errors`` lists them with line numbers), or the batch's estimated
  tokens plus those of the batches validated and not finished exceed ``batch_queue_tokens``
  (``token_limit_exceeded``); no line runs, nothing is billed, ``request_counts`` stay 0;
- ``expired``: ``batch_window_s`` (what "24h" lasts here) passed since creation, or
  ``batch_expire_after_lines`` lines ran; the lines that ran are in the output / error files,
  the rest in the error file with ``error.code`` "batch_expired";
- ``cancelling`` -> ``cancelled`` (``POST /v1/batches/ID/cancel`` while validating or in
  progress): the same partial results, the rest with ``error.code`` "batch_cancelled".

A line runs through ``answer`` (the online routes' generation and billing, without their
faults, limits or latency); with probability ``batch_line_failure_rate`` (seeded) it fails with a
500 instead, unbilled. ``request_counts``: ``completed`` = 200 lines, ``failed`` = every other
line, the unfinished ones included, so they add up to ``total`` at the end. ``output_file_id``
is set when some line succeeded, ``error_file_id`` when some did not.

Bounds: at most ``batch_max_active`` batches are validating or running at once (one more is a
429); each task holds the event loop for about ``SLICE_S`` (at least one line) before it sleeps
``YIELD_S``, so the online routes stay responsive; its loops are bounded by the file's lines
and every wait by the deadline; shutdown cancels every task. At most ``MAX_STORED_BATCHES``
batches are kept (the oldest finished ones are forgotten first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scotd.teacher.sim.batch_lines import (
    ENDPOINTS,
    LINE_FAILURE,
    MAX_ERRORS_LISTED,
    LineRef,
    Unfinished,
    batch_error,
    check_line,
    iter_lines,
    result_line,
    unfinished_line,
)
from scotd.teacher.sim.config import TeacherSimConfig
from scotd.teacher.sim.files import FileStore, StoredFile, list_page, not_found
from scotd.teacher.sim.openai_api import ApiError, invalid

log = logging.getLogger(__name__)

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
ACTIVE: tuple[BatchStatus, ...] = ("validating", "in_progress", "finalizing", "cancelling")
STAMPS = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
MAX_STORED_BATCHES = 10_000
SLICE_S = 0.005  # the longest a batch task holds the event loop (but one line) before yielding
# ... and then it sleeps this long: a real pause, not sleep(0), so that an online request (many
# loop rounds: read, handle, write) finishes in the gap instead of waiting a slice per round.
YIELD_S = 0.002
_MIN_SLEEP_S = 0.002  # pacing sleeps shorter than this are skipped (the next slice catches up)
SHUTDOWN_TIMEOUT_S = 2.0
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512

# (line body, chat, identity) -> (status code, response body); billed when the status is 200.
AnswerLine = Callable[[dict[str, Any], bool, str], tuple[int, dict[str, Any]]]


@dataclass(eq=False)
class Batch:
    """One batch; ``object()`` is what the API returns for it."""

    id: str
    endpoint: str
    input_file: StoredFile
    metadata: dict[str, str] | None
    created_at: int
    expires_at: int
    deadline: float  # time.monotonic() at which the completion window ends
    status: BatchStatus = "validating"
    stamps: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    model: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    queued_tokens: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set on cancel: stop waiting
    task: asyncio.Task[None] | None = None

    def stamp(self, status: BatchStatus) -> None:
        self.status = status
        self.stamps[status] = int(time.time())

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file.id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            **{f"{s}_at": self.stamps.get(s) for s in STAMPS},
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": self.metadata,
        }


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    ok = isinstance(value, dict) and len(value) <= MAX_METADATA_PAIRS
    ok = ok and all(
        isinstance(k, str)
        and isinstance(v, str)
        and len(k) <= MAX_METADATA_KEY
        and len(v) <= MAX_METADATA_VALUE
        for k, v in value.items()
    )
    if not ok:
        raise invalid(
            f"metadata must be an object of at most {MAX_METADATA_PAIRS} string pairs (keys up to "
            f"{MAX_METADATA_KEY} characters, values up to {MAX_METADATA_VALUE})",
            "metadata",
        )
    return dict(value)


class _Results:
    """The output and error lines written so far."""

    def __init__(self) -> None:
        self.output: list[bytes] = []
        self.errors: list[bytes] = []


class BatchRunner:
    """Batches by id (creation order) and their tasks; single-threaded use from the event loop."""

    def __init__(self, config: TeacherSimConfig, files: FileStore, answer: AnswerLine) -> None:
        self.config = config
        self.files = files
        self._answer = answer
        self._batches: dict[str, Batch] = {}
        self._failure_rng = random.Random(f"{config.seed}:batch_failures")

    # --- the API ------------------------------------------------------------------------------

    def create(self, body: Any) -> Batch:
        """Validate a create request (400 / 404 / 429 as ``ApiError``) and start the batch."""
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise invalid("you must provide an input_file_id", "input_file_id")
        try:
            stored = self.files.get(file_id)
        except ApiError:
            raise not_found("file", file_id, "input_file_id") from None
        if stored.purpose != "batch":
            raise invalid("the input file must have been uploaded with purpose 'batch'", "input_file_id")
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
            raise invalid(f"endpoint must be one of {', '.join(ENDPOINTS)} on teacher-sim", "endpoint")
        if body.get("completion_window") != "24h":
            raise invalid("completion_window must be '24h'", "completion_window")
        metadata = _metadata(body.get("metadata"))
        active = sum(b.status in ACTIVE for b in self._batches.values())
        if active >= self.config.batch_max_active:
            raise ApiError(
                429,
                f"{active} batches are validating or in progress, the most this server runs at once "
                "(batch_max_active); wait for one to finish.",
                "requests",
                None,
                "rate_limit_exceeded",
            )
        now = int(time.time())
        batch = Batch(
            id="batch_" + uuid.uuid4().hex[:24],
            endpoint=endpoint,
            input_file=stored,
            metadata=metadata,
            created_at=now,
            expires_at=now + max(1, round(self.config.batch_window_s)),
            deadline=time.monotonic() + self.config.batch_window_s,
        )
        self._store(batch)
        batch.task = asyncio.get_running_loop().create_task(self._run(batch), name=batch.id)
        return batch

    def get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise not_found("batch", batch_id, "batch_id")
        return batch

    def page(self, limit: int, after: str | None) -> dict[str, Any]:
        """Newest first, as OpenAI lists them."""
        return list_page([b.object() for b in reversed(self._batches.values())], limit, after)

    def cancel(self, batch_id: str) -> Batch:
        batch = self.get(batch_id)
        if batch.status in ("validating", "in_progress"):
            batch.stamp("cancelling")
            batch.wake.set()
        elif batch.status != "cancelling":
            raise invalid(f"Cannot cancel a batch with status '{batch.status}'.", "batch_id")
        return batch

    async def close(self) -> None:
        """Cancel every running batch task and wait for them (bounded)."""
        tasks = [b.task for b in self._batches.values() if b.task is not None and not b.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_S)

    def _store(self, batch: Batch) -> None:
        self._batches[batch.id] = batch
        if len(self._batches) > MAX_STORED_BATCHES:
            old = next((b for b in self._batches.values() if b.status not in ACTIVE), None)
            if old is not None:
                del self._batches[old.id]

    # --- the task -----------------------------------------------------------------------------

    async def _pause(self, batch: Batch, seconds: float) -> None:
        """Sleep ``seconds`` (never past the deadline); a cancel wakes it early."""
        seconds = min(seconds, batch.deadline - time.monotonic())
        if seconds <= 0 or batch.wake.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):  # on 3.10 not yet the builtin TimeoutError
            await asyncio.wait_for(batch.wake.wait(), seconds)

    async def _run(self, batch: Batch) -> None:
        try:
            await self._pause(batch, self.config.batch_validate_s)
            refs = await self._validate(batch)
            if refs is None:
                return
            batch.stamp("in_progress")
            results = _Results()
            ran, ending = await self._process(batch, refs, results)
            if ending is None:
                batch.stamp("finalizing")
                await self._pause(batch, self.config.batch_validate_s)
                self._finish(batch, "completed", results)
            else:
                self._finish(batch, ending, results, refs[ran:])
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the batch fails with a message, the server keeps serving
            log.exception("teacher-sim: batch %s failed unexpectedly", batch.id)
            error = batch_error("server_error", "teacher-sim failed on this batch (a bug; see its log)")
            self._fail(batch, [error])

    async def _validate(self, batch: Batch) -> list[LineRef] | None:
        """The checked lines, or ``None`` after the batch ended (failed, cancelled or expired)."""
        cfg = self.config
        content = batch.input_file.content
        seen: set[str] = set()
        refs: list[LineRef] = []
        errors: list[dict[str, Any]] = []
        tokens, requests = 0, 0
        slice_start = time.perf_counter()
        for number, start, end in iter_lines(content):
            requests += 1
            if requests > cfg.batch_max_requests:
                errors.append(
                    batch_error(
                        "too_many_tasks", f"The batch has more than {cfg.batch_max_requests} requests."
                    )
                )
                break
            checked = check_line(
                content[start:end],
                number,
                endpoint=batch.endpoint,
                model=cfg.model_name,
                seen=seen,
                max_n=cfg.max_n,
                context_tokens=cfg.context_tokens,
            )
            if isinstance(checked, dict):
                errors.append(checked)
                if len(errors) >= MAX_ERRORS_LISTED:
                    break
            else:
                refs.append(LineRef(checked[0], start, end))
                tokens += checked[1]
            if time.perf_counter() - slice_start > SLICE_S:
                await asyncio.sleep(YIELD_S)
                slice_start = time.perf_counter()
        if requests == 0:
            errors.append(batch_error("empty_file", "The batch input file is empty."))
        if errors:
            self._fail(batch, errors)
            return None
        if batch.status == "cancelling" or time.monotonic() >= batch.deadline:
            batch.total = len(refs)
            ending: Literal["cancelled", "expired"] = (
                "cancelled" if batch.status == "cancelling" else "expired"
            )
            self._finish(batch, ending, _Results(), refs)
            return None
        return self._enqueue(batch, refs, tokens)

    def _enqueue(self, batch: Batch, refs: list[LineRef], tokens: int) -> list[LineRef] | None:
        limit = self.config.batch_queue_tokens
        queued = sum(b.queued_tokens for b in self._batches.values() if b.status in ACTIVE)
        if limit and queued + tokens > limit:
            message = (
                f"Enqueued token limit reached for {self.config.model_name}. Limit: {limit:,} enqueued "
                f"tokens; this batch needs {tokens:,} and {queued:,} are enqueued. Please try again once "
                "some in_progress batches have been completed."
            )
            self._fail(batch, [batch_error("token_limit_exceeded", message)])
            return None
        batch.model = self.config.model_name
        batch.total = len(refs)
        batch.queued_tokens = tokens
        return refs

    async def _process(
        self, batch: Batch, refs: list[LineRef], results: _Results
    ) -> tuple[int, Literal["expired", "cancelled"] | None]:
        """Run the lines at ``batch_line_ms`` each; ``(lines run, why it stopped early or None)``."""
        cfg = self.config
        chat = ENDPOINTS[batch.endpoint]
        line_s = cfg.batch_line_ms / 1000
        started = time.monotonic()
        slice_start = time.perf_counter()
        for i, ref in enumerate(refs):
            wait = started + (i + 1) * line_s - time.monotonic()
            if wait >= _MIN_SLEEP_S:
                await self._pause(batch, wait)
                slice_start = time.perf_counter()
            if batch.status == "cancelling":
                return i, "cancelled"
            if time.monotonic() >= batch.deadline or (
                cfg.batch_expire_after_lines is not None and i >= cfg.batch_expire_after_lines
            ):
                return i, "expired"
            self._run_line(batch, ref, chat, results)
            if time.perf_counter() - slice_start > SLICE_S:
                await asyncio.sleep(YIELD_S)
                slice_start = time.perf_counter()
        return len(refs), None

    def _run_line(self, batch: Batch, ref: LineRef, chat: bool, results: _Results) -> None:
        body = json.loads(batch.input_file.content[ref.start : ref.end])["body"]
        if self._failure_rng.random() < self.config.batch_line_failure_rate:
            status, response = LINE_FAILURE.status, LINE_FAILURE.body()
        else:
            status, response = self._answer(body, chat, "key:" + ref.custom_id)
        line = result_line(ref.custom_id, status, response)
        if status == 200:
            usage = response["usage"]
            batch.completed += 1
            batch.input_tokens += usage["prompt_tokens"]
            batch.cached_tokens += usage["prompt_tokens_details"]["cached_tokens"]
            batch.output_tokens += usage["completion_tokens"]
            results.output.append(line)
        else:
            batch.failed += 1
            results.errors.append(line)

    # --- endings ------------------------------------------------------------------------------

    def _fail(self, batch: Batch, errors: list[dict[str, Any]]) -> None:
        batch.errors = errors
        batch.total = batch.completed = batch.failed = 0
        batch.queued_tokens = 0
        batch.stamp("failed")
        log.info("batch %s failed: %s", batch.id, errors[0]["code"])

    def _finish(
        self,
        batch: Batch,
        status: Literal["completed", "expired", "cancelled"],
        results: _Results,
        unfinished: list[LineRef] | None = None,
    ) -> None:
        if unfinished:
            code: Unfinished = "batch_expired" if status == "expired" else "batch_cancelled"
            results.errors.extend(unfinished_line(ref.custom_id, code) for ref in unfinished)
            batch.failed += len(unfinished)
        if results.output:
            name = f"{batch.id}_output.jsonl"
            batch.output_file_id = self.files.add(
                name, "batch_output", b"".join(results.output), upload=False
            ).id
        if results.errors:
            name = f"{batch.id}_error.jsonl"
            batch.error_file_id = self.files.add(
                name, "batch_output", b"".join(results.errors), upload=False
            ).id
        batch.queued_tokens = 0
        batch.stamp(status)
        log.info("batch %s %s: %d completed, %d failed", batch.id, status, batch.completed, batch.failed)
