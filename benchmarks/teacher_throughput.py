"""How much of a provider's rate limit each teacher client turns into paid answers.

Clients, each against its own fresh ``scotd teacher-sim`` process with the same limits and
latency, sending the same requests (``plan_requests`` over synthetic questions: same prompts, n,
max_tokens, stop, seed):

- ``scotd``: our sampler, ``run_sample`` with its default pool and limits learned from the
  provider's ``x-ratelimit-*`` headers.
- ``sequential-reference``: the reference code's way: one call at a time, ``sleep(1)`` before
  each, ``sleep(45)`` after an error (bounded here: 3 attempts per request, and a deadline).
- ``sequential-tuned``: the same with the sleep cut to ``60 / rpm``; still latency-bound.
- ``ray-data-http``: Ray Data's own ``HttpRequestProcessorConfig(qps=rpm // 60)`` (concurrency 1,
  so ``qps`` is the provider's limit; default ``batch_size``) posting the same bodies to
  ``/v1/completions``. If it fails, the table says why instead of giving a number. (In 2.60 its
  UDF sleeps a batch's requests out at ``qps`` but then awaits them one at a time: it is
  latency-bound too, and idles ``batch_size / qps`` seconds before a batch's first request.)

Method: rates are measured from the provider's side and the same way for every client. A
thread polls the sim's ``GET /stats`` every ``POLL_S`` seconds; the *active span* runs from the
first poll that shows a paid request to the first poll that shows the final count, and
``achieved RPM`` = (paid requests counted during the span) / span, likewise tokens (prompt +
completion, as the sim bills them). Start-up (Ray actors, planning) is outside the span but inside
``wall s``. ``429s`` is the share of all requests the server received that it answered 429.

Reading the table: ``% RPM`` / ``% TPM`` are achieved rates over the provider's limit (``-`` when
that limit is off); the scenario's *binding* limit is the one that is set. A job of a few
windows reads above 100%: the limiter spends each window's room as the provider reports it (a
window of ``C`` requests holds them all at once), so the rate over a short job is not capped at
the per-minute figure; ``--windows`` measures that against the window's ideal schedule. Our target is >= 90% of
the binding limit with < 2% of requests answered 429. Ratios are ours / theirs, on the binding
limit. The TPM scenario (n=10, no RPM limit) runs our sampler only, by default over a 60 s window
(per-minute limits, as OpenAI documents them). Over a short window no pacer of discrete requests
can beat ``1 - request_tokens / window_budget`` without 429s (a window can always hold one request
more than the pace allows): ``--tpm-window-s 10`` with ~1,100-token requests against a
10,000-token window shows the limiter's 429 back-off at work there. With ``--repeats K`` every
number is the median of K runs.
Sequential clients run until their requests or ``--seq-max-s`` run out, whichever comes first.

``--windows``: no wasted rate window. Shapes against the sim's sliding window of ``W`` seconds
(``--shape-window-s``; 60 = the real per-minute shapes, a shorter one keeps the shape -- requests
per window -- with ``rpm`` scaled to ``capacity x 60 / W``):

- ``two-windows``: 60 requests a window, 120 requests (n=5): 60 RPM at W=60;
- ``sub-window``: 120 a window, 60 requests (n=5), 10% of requests answered 500 (``fault_500``):
  120 RPM at W=60, a job smaller than one window;
- ``long``: 60 a window, ``--long-windows`` windows' worth of requests.

Clients: ``scotd`` (``run_sample``, Ray, limits learnt from the headers), ``scotd-async`` (the
same ``RateLimiter`` and ``call_teacher`` in one asyncio loop, no Ray, 64 calls at most in flight
as the default pool), ``scotd-async-paced`` (the same with ``use_remaining=False``: the limiter as
it was, pacing at ``safety x limit`` from an empty bucket) and ``plain-async`` (no limiter: 64 in
flight, a 429 waits its ``Retry-After``, a 5xx the sampler's backoff). Columns:

- ``job s``: first request sent to last answer received (``scotd``: the limiter's first grant to
  its last paid answer, so Ray start-up is outside);
- ``ideal s``: the ideal schedule for the provider's window: a sliding (or fixed) window of
  ``C`` requests per ``W`` seconds admits request ``i`` (0-based) no earlier than
  ``floor(i / C) x W``, so ``P`` paid requests take at least ``floor((P - 1) / C) x W + burst``,
  with ``burst`` the time an unlimited sim with the same latency takes to answer one window's
  worth sent at once (measured first: on 2 cores the sim's own CPU makes a burst of 60 answers
  take several latencies; while Ray runs, longer still). Neither the probe nor retries of faults
  are in it: a job smaller than a window is bound by probe + burst + the sampler's backoff for
  faults, so ``plain-async`` (no probe) is its yardstick;
- ``ratio`` = job / ideal; ``429s`` as above;
- ``steady``: over every poll ``t`` from ``W`` after the first paid answer to the last, the paid
  answers in ``(t - W, t]``: their median, per minute, over the limit (``-`` for a job shorter
  than a window). A window the client keeps full reads 100%.

Target (``scotd``): ratio <= 1.15, < 2% 429s, steady >= 95% of the limit.

    python benchmarks/teacher_throughput.py --windows                       # W=10 s: ~6 min
    python benchmarks/teacher_throughput.py --windows --shape-window-s 60 \
        --shapes two-windows,sub-window                                     # real shapes: ~8 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import openai

from scotd.artifacts import SampleSummary
from scotd.config import load_config
from scotd.ray_runtime import init_ray
from scotd.sample.config import SampleConfig
from scotd.sample.plan import PlannedRequest, plan_requests
from scotd.sample.run import run_sample
from scotd.tasks import load_task
from scotd.teacher.client import TeacherRequest, call_teacher, interpret
from scotd.teacher.ratelimit import RateLimiter
from scotd.teacher.sim.process import TeacherSimProcess

POLL_S = 0.2
REFERENCE_SLEEP_S = 1.0  # the reference code's pause before every call
REFERENCE_RETRY_SLEEP_S = 45.0  # ... and after every error
SEQUENTIAL_ATTEMPTS = 3  # the reference retried forever; bounded here
TARGET_FRACTION, TARGET_429_SHARE = 0.90, 0.02
DEFAULT_OUT = "outputs/benchmarks/teacher_throughput.json"
WINDOWS_OUT = "outputs/benchmarks/teacher_windows.json"


@dataclass(frozen=True)
class Scenario:
    name: str
    rpm: int
    tpm: int
    n: int
    requests: int
    window_s: float
    latency_base_ms: float
    clients: tuple[str, ...]

    def sim_args(self) -> list[str]:
        limits = ["--rpm", str(self.rpm), "--tpm", str(self.tpm), "--window-s", str(self.window_s)]
        return [*limits, "--latency-base-ms", str(self.latency_base_ms), "--seed", "0"]

    @property
    def binding(self) -> str:
        return "rpm" if self.rpm else "tpm"


@dataclass(frozen=True)
class Measurement:
    scenario: str
    client: str
    paid_requests: int
    wall_s: float
    active_s: float
    rpm: float
    tpm: float
    requests_seen: int
    answered_429: int
    note: str = ""

    @property
    def share_429(self) -> float:
        return self.answered_429 / self.requests_seen if self.requests_seen else 0.0


class StatsPoller:
    """Samples ``sim.stats()`` every ``POLL_S`` on a thread: (time, paid, tokens, seen, 429s)."""

    def __init__(self, sim: TeacherSimProcess) -> None:
        self.sim = sim
        self.samples: list[tuple[float, int, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatsPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._poll()  # the final counts, after the client returned

    def _poll(self) -> None:
        s = self.sim.stats()
        sample = (time.monotonic(), s["paid_requests"], s["tokens"]["total"], s["requests"])
        self.samples.append((*sample, s["outcomes"]["429"]))

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with contextlib.suppress(OSError):  # a slow /stats answer costs one sample, not the run
                self._poll()

    def measure(self, scenario: str, client: str, wall_s: float, note: str) -> Measurement:
        _, paid, tokens, seen, limited = self.samples[-1]
        first = next((s for s in self.samples if s[1] > 0), None)
        last = next((s for s in self.samples if s[1] == paid), None)
        span = last[0] - first[0] if first and last else 0.0
        per_min = 60.0 / span if span > 0 else 0.0
        return Measurement(
            scenario, client, paid, round(wall_s, 2), round(span, 2),
            round((paid - first[1]) * per_min, 1) if first else 0.0,
            round((tokens - first[2]) * per_min, 1) if first else 0.0,
            seen, limited, note,
        )  # fmt: skip


# --- clients: each gets (scenario, base_url, requests, work dir, seq deadline s) and returns a note ---


def run_ours(sc: Scenario, base_url: str, requests: list[TeacherRequest], work: Path, _: float) -> str:
    overrides = {"task": "synthetic", "limit": len(requests), "n": sc.n, "progress": False}
    overrides |= {"out": str(work / "ours"), "teacher": {"base_url": base_url}}
    summary = run_sample(load_config(SampleConfig, overrides=overrides)).summary
    assert isinstance(summary, SampleSummary)
    made = summary.requests_this_run["made"]
    return f"limits learned {summary.limits}; {made}/{len(requests)} made"


def _sequential(
    base_url: str, requests: list[TeacherRequest], sleep_s: float, retry_sleep_s: float, max_s: float
) -> str:
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=60.0)
    deadline = time.monotonic() + max_s
    done = failed = 0
    for request in requests:
        if time.monotonic() >= deadline:
            break
        for _attempt in range(SEQUENTIAL_ATTEMPTS):
            time.sleep(sleep_s)  # the client under test paces by sleeping: that is the point
            try:
                client.completions.create(**request.body())
                done += 1
                break
            except openai.APIError:
                time.sleep(max(0.0, min(retry_sleep_s, deadline - time.monotonic())))
        else:
            failed += 1
    return f"{done}/{len(requests)} answered, {failed} given up, in a {max_s:g}s budget"


def run_sequential_reference(
    sc: Scenario, base_url: str, requests: list[TeacherRequest], _: Path, max_s: float
) -> str:
    return _sequential(base_url, requests, REFERENCE_SLEEP_S, REFERENCE_RETRY_SLEEP_S, max_s)


def run_sequential_tuned(
    sc: Scenario, base_url: str, requests: list[TeacherRequest], _: Path, max_s: float
) -> str:
    return _sequential(base_url, requests, 60.0 / sc.rpm, 60.0 / sc.rpm, max_s)


def run_ray_data(sc: Scenario, base_url: str, requests: list[TeacherRequest], _: Path, __: float) -> str:
    import ray.data
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    qps = max(1, sc.rpm // 60)  # the config takes an int
    config = HttpRequestProcessorConfig(url=f"{base_url}/completions", qps=qps, concurrency=1, max_retries=6)
    processor = build_processor(
        config, postprocess=lambda row: {"tokens": row["http_response"]["usage"]["total_tokens"]}
    )
    rows = processor(ray.data.from_items([{"payload": r.body()} for r in requests])).take_all()
    return f"qps={qps}, batch_size={config.batch_size}; {len(rows)}/{len(requests)} answered"


CLIENTS: dict[str, Callable[[Scenario, str, list[TeacherRequest], Path, float], str]] = {
    "scotd": run_ours,
    "sequential-reference": run_sequential_reference,
    "sequential-tuned": run_sequential_tuned,
    "ray-data-http": run_ray_data,
}


def planned(requests: int, n: int) -> list[PlannedRequest]:
    """The exact requests ``run_sample`` plans for the synthetic task with this limit and n."""
    cfg = load_config(SampleConfig, overrides={"task": "synthetic", "limit": requests, "n": n})
    examples = load_task("synthetic", "train", limit=requests, seed=cfg.seed).examples
    return plan_requests(examples, cfg)


def scenario_requests(sc: Scenario) -> list[TeacherRequest]:
    return [p.request for p in planned(sc.requests, sc.n)]


# --- window shapes (--windows): does the client spend the window the provider has free? --------


@dataclass(frozen=True)
class WindowShape:
    name: str
    per_window: int  # requests the provider's window holds
    requests: int
    n: int
    window_s: float
    latency_base_ms: float
    faults: tuple[str, ...] = ()  # extra sim flags
    seed: int = 0  # the sim's: its fault draws

    @property
    def rpm(self) -> int:
        """The per-minute limit whose window of ``window_s`` holds ``per_window`` (as the sim counts)."""
        return math.ceil(self.per_window * 60 / self.window_s)

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.rpm * self.window_s / 60))  # the sim's own formula

    def sim_args(self) -> list[str]:
        limits = ["--rpm", str(self.rpm), "--window-s", str(self.window_s)]
        return [
            *limits,
            "--latency-base-ms",
            str(self.latency_base_ms),
            "--seed",
            str(self.seed),
            *self.faults,
        ]

    def ideal_s(self, paid: int, burst_s: float) -> float:
        """Request i goes no earlier than floor(i / C) windows in; the last window's burst takes
        ``burst_s`` to answer."""
        return (max(paid, 1) - 1) // self.capacity * self.window_s + burst_s


@dataclass(frozen=True)
class WindowMeasurement:
    shape: str
    client: str
    paid_requests: int
    job_s: float
    ideal_s: float
    requests_seen: int
    answered_429: int
    steady_rpm: float | None
    limit_rpm: int
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.job_s / self.ideal_s if self.ideal_s > 0 else math.inf

    @property
    def share_429(self) -> float:
        return self.answered_429 / self.requests_seen if self.requests_seen else 0.0

    @property
    def steady_share(self) -> float | None:
        return None if self.steady_rpm is None else self.steady_rpm / self.limit_rpm


@dataclass
class AsyncRun:
    """What ``drive_async`` did: the job's span and how each request ended."""

    job_s: float
    statuses: dict[str, int]
    limiter: dict[str, Any]


async def drive_async(
    base_url: str,
    plan: list[PlannedRequest],
    limiter: RateLimiter | None,
    *,
    concurrency: int = 64,
    max_retries: int = 6,
    max_rate_limit_retries: int = 20,
    backoff_s: tuple[float, float] = (0.5, 30.0),
    timeout_s: float = 60.0,
    seed: int = 0,
) -> AsyncRun:
    """Buy every request once through ``limiter`` (``None``: a plain client) in one event loop,
    at most ``concurrency`` at a time; the sampler's policy for each outcome: a paid answer settles
    its reservation, a 429 tells the limiter (or, plain, sleeps its ``Retry-After``), a 5xx backs
    off ``base x 2^k`` (jittered). Every answer's ``x-ratelimit-*`` headers reach the limiter."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    rng = random.Random(seed)
    first_send, last_ok = math.inf, 0.0

    async def buy(p: PlannedRequest) -> str:
        nonlocal first_send, last_ok
        transient = limited = 0
        async with gate:
            for _attempt in range(max_retries + max_rate_limit_retries + 1):
                grant_id = -1
                if limiter is not None:
                    grant = await limiter.acquire(p.est_tokens)
                    if grant.decision != "granted":
                        return grant.decision
                    grant_id = grant.grant_id
                first_send = min(first_send, time.monotonic())
                outcome = await call_teacher(client, p.request, timeout_s=timeout_s)
                rate = outcome.rate.aged()
                if outcome.kind == "ok":
                    usage = interpret(outcome.raw_body, p.request.n).usage or {}
                    if limiter is not None:
                        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
                        limiter.complete(grant_id, prompt, completion, rate=rate)
                    last_ok = max(last_ok, time.monotonic())
                    return "ok"
                if limiter is not None:
                    limiter.complete(grant_id, rate=rate)
                if outcome.kind == "rate_limited":
                    limited += 1
                    if limited > max_rate_limit_retries:
                        return "rate_limited"
                    if limiter is not None:
                        limiter.rate_limited(outcome.retry_after_s)
                    else:
                        await asyncio.sleep(outcome.retry_after_s)
                    continue
                if outcome.kind != "transient":
                    return outcome.kind
                transient += 1
                if transient > max_retries:
                    return "transient"
                base, cap = backoff_s
                await asyncio.sleep(min(cap, base * 2 ** (transient - 1)) * rng.uniform(0.5, 1.5))
        return "gave_up"

    try:
        ends = await asyncio.gather(*(buy(p) for p in plan))
    finally:
        await client.close()
    job_s = last_ok - first_send if last_ok > 0 else 0.0
    snapshot = limiter.snapshot() if limiter is not None else {}
    return AsyncRun(job_s, dict(Counter(ends)), snapshot)


def steady_rpm(samples: list[tuple[float, int, int, int, int]], window_s: float) -> float | None:
    """Median paid answers per window over polls from one window after the first paid answer to
    the last, per minute; ``None`` when that span is shorter than a window (too few windows)."""
    first = next((s[0] for s in samples if s[1] > 0), None)
    final = samples[-1][1] if samples else 0
    last = next((s[0] for s in samples if s[1] == final), None)
    if first is None or last is None or last - (first + window_s) < window_s:
        return None
    counts, j = [], 0
    for t, paid, *_ in samples:
        if not first + window_s <= t <= last:
            continue
        while j + 1 < len(samples) and samples[j + 1][0] <= t - window_s:
            j += 1
        counts.append(paid - samples[j][1])
    return statistics.median(counts) * 60 / window_s if counts else None


def burst_latency_s(shape: WindowShape, plan: list[PlannedRequest]) -> tuple[float, float]:
    """(median latency of one answer, time to answer one window's worth sent at once) for this
    shape, on an unlimited sim with the same latency: a window's burst is what the provider must
    answer when a client spends its window, and on a small machine that takes longer than one."""
    args = ["--latency-base-ms", str(shape.latency_base_ms), "--seed", "0"]
    with TeacherSimProcess(args) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="EMPTY", max_retries=0, timeout=60.0)
        took = []
        for p in plan[:5]:
            t0 = time.monotonic()
            client.completions.create(**p.request.body())
            took.append(time.monotonic() - t0)
        burst = plan[: min(shape.capacity, len(plan))]
        bursts = []
        for _ in range(3):  # the first warms the client and the server up; the least of the others
            t0 = time.monotonic()
            run = asyncio.run(drive_async(sim.base_url, burst, None))
            bursts.append(time.monotonic() - t0)
            assert run.statuses == {"ok": len(burst)}, run.statuses
    return statistics.median(took), min(bursts[1:])


def sample_summary(n: int, requests: int, base_url: str, out: Path) -> SampleSummary:
    overrides = {"task": "synthetic", "limit": requests, "n": n, "progress": False}
    overrides |= {"out": str(out), "teacher": {"base_url": base_url}}
    summary = run_sample(load_config(SampleConfig, overrides=overrides)).summary
    assert isinstance(summary, SampleSummary)
    return summary


WINDOW_CLIENTS = ("scotd", "scotd-async", "scotd-async-paced", "plain-async")


def run_window_client(
    shape: WindowShape, client: str, plan: list[PlannedRequest], burst_s: float
) -> WindowMeasurement:
    with (
        tempfile.TemporaryDirectory(prefix="scotd-bench-") as tmp,
        TeacherSimProcess(shape.sim_args()) as sim,
    ):
        with StatsPoller(sim) as poller:
            try:
                if client == "scotd":
                    summary = sample_summary(shape.n, shape.requests, sim.base_url, Path(tmp) / "ours")
                    job_s = summary.active_s
                    note = f"{summary.requests_this_run['by_status']}"
                else:
                    limiter = (
                        None
                        if client == "plain-async"
                        else RateLimiter(use_remaining=client == "scotd-async")
                    )
                    run = asyncio.run(drive_async(sim.base_url, plan, limiter))
                    job_s = run.job_s
                    note = f"{run.statuses}" + (
                        f", {run.limiter['header_grants']} on headers" if limiter else ""
                    )
            except Exception as e:  # a client's failure is a row of the table, not a crash
                job_s, note = (
                    0.0,
                    f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}",
                )
        samples = list(poller.samples)
    _, paid, _, seen, limited = samples[-1]
    m = WindowMeasurement(
        shape.name, client, paid, round(job_s, 2), round(shape.ideal_s(paid, burst_s), 2), seen, limited,
        steady_rpm(samples, shape.window_s), shape.rpm, note,
    )  # fmt: skip
    steady = f"{100 * m.steady_share:.1f}%" if m.steady_share is not None else "-"
    print(
        f"  {client:<18} {paid:>4} paid, job {m.job_s:7.2f}s, ideal {m.ideal_s:6.2f}s, x{m.ratio:.2f}, "
        f"{limited} 429s, steady {steady}  ({note})",
        flush=True,
    )
    return m


def median_window(runs: list[WindowMeasurement]) -> WindowMeasurement:
    def med(values: list[Any]) -> Any:
        return statistics.median(values)

    steadies = [r.steady_rpm for r in runs if r.steady_rpm is not None]
    return replace(
        runs[0],
        paid_requests=med([r.paid_requests for r in runs]),
        job_s=med([r.job_s for r in runs]),
        ideal_s=med([r.ideal_s for r in runs]),
        requests_seen=med([r.requests_seen for r in runs]),
        answered_429=med([r.answered_429 for r in runs]),
        steady_rpm=med(steadies) if steadies else None,
        note=runs[-1].note,
    )


WINDOW_TARGET_RATIO, WINDOW_TARGET_STEADY = 1.15, 0.95


def render_windows(shapes: list[WindowShape], rows: list[WindowMeasurement]) -> tuple[str, dict[str, Any]]:
    head = f"{'shape':<12} {'client':<18} {'paid':>5} {'job s':>8} {'ideal s':>8} {'ratio':>6} "
    head += f"{'429s (%)':>10} {'steady RPM':>10} {'% limit':>7}"
    lines = [head, "-" * len(head)]
    for m in rows:
        steady = f"{m.steady_rpm:.1f}" if m.steady_rpm is not None else "-"
        share = f"{100 * m.steady_share:.1f}" if m.steady_share is not None else "-"
        lines.append(
            f"{m.shape:<12} {m.client:<18} {m.paid_requests:>5g} {m.job_s:>8.2f} {m.ideal_s:>8.2f} "
            f"{m.ratio:>6.2f} {f'{m.answered_429:g} ({100 * m.share_429:.1f})':>10} {steady:>10} {share:>7}"
        )
        if m.note.startswith("failed"):
            lines.append(f"{'':<12} -> {m.note}")
    lines.append("")
    verdicts: dict[str, Any] = {}
    for shape in shapes:
        mine = {m.client: m for m in rows if m.shape == shape.name}
        for client in ("scotd", "scotd-async"):
            if client not in mine:
                continue
            m = mine[client]
            steady_ok = m.steady_share is None or m.steady_share >= WINDOW_TARGET_STEADY
            ok = m.ratio <= WINDOW_TARGET_RATIO and m.share_429 < TARGET_429_SHARE and steady_ok
            before, plain = mine.get("scotd-async-paced"), mine.get("plain-async")
            speedup = round(before.job_s / m.job_s, 2) if before and m.job_s > 0 else None
            vs_plain = round(m.job_s / plain.job_s, 2) if plain and plain.job_s > 0 else None
            verdicts[f"{shape.name}/{client}"] = {
                "ratio": round(m.ratio, 3), "share_429": round(m.share_429, 4),
                "steady_share": None if m.steady_share is None else round(m.steady_share, 4),
                "target_met": ok, "speedup_vs_paced": speedup, "job_vs_plain_async": vs_plain,
            }  # fmt: skip
            lines.append(
                f"{shape.name}/{client}: {m.job_s:.1f}s for an ideal {m.ideal_s:.1f}s (x{m.ratio:.2f}), "
                f"{100 * m.share_429:.1f}% 429s"
                + (f", steady {100 * m.steady_share:.1f}% of the limit" if m.steady_share is not None else "")
                + f" -> target (<= {WINDOW_TARGET_RATIO}x, < 2%, >= 95%) {'MET' if ok else 'MISSED'}"
                + (f"; {speedup}x faster than the paced limiter" if speedup else "")
                + (f", {vs_plain}x plain-async's time" if vs_plain else "")
            )
    return "\n".join(lines), verdicts


def window_shapes(window_s: float, long_windows: int, latency_ms: float) -> list[WindowShape]:
    return [
        WindowShape("two-windows", 60, 120, 5, window_s, latency_ms),
        # Seed 2: 8 of the first 60 draws are faults (seed 0 happens to draw none before the 62nd).
        WindowShape("sub-window", 120, 60, 5, window_s, latency_ms, ("--fault-500", "0.1"), seed=2),
        WindowShape("long", 60, 60 * long_windows, 5, window_s, latency_ms),
    ]


def run_windows(args: argparse.Namespace) -> int:
    shapes = [
        s
        for s in window_shapes(args.shape_window_s, args.long_windows, args.latency_ms)
        if s.name in args.shapes
    ]
    clients = [c for c in args.window_clients.split(",") if c]
    unknown = set(clients) - set(WINDOW_CLIENTS)
    if unknown:
        raise SystemExit(
            f"unknown --window-clients {sorted(unknown)}; choose from {', '.join(WINDOW_CLIENTS)}"
        )
    started = time.monotonic()
    if "scotd" in clients:
        init_ray()  # once, outside every client's time
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
    runs: list[WindowMeasurement] = []
    latencies: dict[str, tuple[float, float]] = {}
    for shape in shapes:
        plan = planned(shape.requests, shape.n)
        latencies[shape.name] = (one, burst) = burst_latency_s(shape, plan)
        print(
            f"shape {shape.name}: sim {' '.join(shape.sim_args())} ({shape.capacity} a {shape.window_s:g}s window), "
            f"{shape.requests} requests, n={shape.n}; one answer takes {one:.3f}s, "
            f"a window's burst ({min(shape.capacity, len(plan))} at once) {burst:.2f}s",
            flush=True,
        )
        for client in clients:
            runs += [run_window_client(shape, client, plan, burst) for _ in range(args.repeats)]
    medians = [
        median_window([r for r in runs if (r.shape, r.client) == key])
        for key in dict.fromkeys((r.shape, r.client) for r in runs)
    ]
    table, verdicts = render_windows(shapes, medians)
    total_s = time.monotonic() - started
    print(f"\n{table}\n\n(medians of {args.repeats} run(s) each; benchmark wall time {total_s:.0f}s)")
    out = Path(args.out if args.out != DEFAULT_OUT else WINDOWS_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "method": "job: first request to last answer; ideal: floor((paid - 1) / capacity) windows + one burst",
        "args": vars(args),
        "shapes": [asdict(s) | {"rpm": s.rpm, "capacity": s.capacity} for s in shapes],
        "latency_s": {k: {"one": round(a, 3), "burst": round(b, 3)} for k, (a, b) in latencies.items()},
        "medians": [
            asdict(m) | {"ratio": round(m.ratio, 3), "share_429": round(m.share_429, 4)} for m in medians
        ],
        "runs": [asdict(m) for m in runs],
        "verdicts": verdicts,
        "wall_s": round(total_s, 1),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def run_one(sc: Scenario, client: str, seq_max_s: float) -> Measurement:
    requests = scenario_requests(sc)
    with tempfile.TemporaryDirectory(prefix="scotd-bench-") as tmp, TeacherSimProcess(sc.sim_args()) as sim:
        with StatsPoller(sim) as poller:
            t0 = time.monotonic()
            try:
                note = CLIENTS[client](sc, sim.base_url, requests, Path(tmp), seq_max_s)
            except Exception as e:  # a client's failure (import, pipeline) is a row of the table, not a crash
                note = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            wall = time.monotonic() - t0
        m = poller.measure(sc.name, client, wall, note)
    print(
        f"  {client:<21} {m.paid_requests:>4} paid, {m.rpm:8.1f} RPM, {m.tpm:9.0f} TPM  ({note})", flush=True
    )
    return m


def median_of(runs: list[Measurement]) -> Measurement:
    def med(field: str) -> Any:
        return statistics.median(getattr(r, field) for r in runs)

    fields = ("paid_requests", "wall_s", "active_s", "rpm", "tpm", "requests_seen", "answered_429")
    return replace(runs[0], **{f: med(f) for f in fields}, note=runs[-1].note)


def achieved(m: Measurement, sc: Scenario) -> float:
    """Fraction of the binding limit."""
    return m.rpm / sc.rpm if sc.binding == "rpm" else m.tpm / sc.tpm


def render(scenarios: list[Scenario], rows: list[Measurement]) -> tuple[str, dict[str, Any]]:
    by_sc = {sc.name: sc for sc in scenarios}
    head = f"{'scenario':<10} {'client':<21} {'reqs':>5} {'wall s':>7} {'active s':>8} {'RPM':>7} "
    head += f"{'% RPM':>6} {'TPM':>8} {'% TPM':>6} {'429s (%)':>10}"
    lines = [head, "-" * len(head)]
    for m in rows:
        sc = by_sc[m.scenario]
        pct_rpm = f"{100 * m.rpm / sc.rpm:.1f}" if sc.rpm else "-"
        pct_tpm = f"{100 * m.tpm / sc.tpm:.1f}" if sc.tpm else "-"
        lines.append(
            f"{m.scenario:<10} {m.client:<21} {m.paid_requests:>5g} {m.wall_s:>7.1f} {m.active_s:>8.1f} "
            f"{m.rpm:>7.1f} {pct_rpm:>6} {m.tpm:>8.0f} {pct_tpm:>6} "
            f"{f'{m.answered_429:g} ({100 * m.share_429:.1f})':>10}"
        )
        if m.note.startswith("failed"):
            lines.append(f"{'':<10} -> {m.note}")
    verdicts: dict[str, Any] = {}
    lines.append("")
    for sc in scenarios:
        mine = next((m for m in rows if m.scenario == sc.name and m.client == "scotd"), None)
        if mine is None:
            continue
        frac = achieved(mine, sc)
        ok = frac >= TARGET_FRACTION and mine.share_429 < TARGET_429_SHARE and mine.paid_requests > 0
        ratios = {
            m.client: round(frac / achieved(m, sc), 2) if achieved(m, sc) > 0 else None
            for m in rows
            if m.scenario == sc.name and m.client != "scotd"
        }
        verdicts[sc.name] = {"fraction_of_binding_limit": round(frac, 4), "target_met": ok, "ratios": ratios}
        ratio_text = ", ".join(f"ours/{c} = {r if r is not None else 'n/a'}x" for c, r in ratios.items())
        lines.append(
            f"{sc.name}: scotd reaches {100 * frac:.1f}% of the {sc.binding.upper()} limit with "
            f"{100 * mine.share_429:.1f}% 429s -> target (>= 90%, < 2%) {'MET' if ok else 'MISSED'}"
            + (f"; {ratio_text}" if ratio_text else "")
        )
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rpm", type=int, default=300, help="RPM scenario: the provider's requests/min")
    p.add_argument("--requests", type=int, default=150, help="RPM scenario: requests (one per question)")
    p.add_argument("--n", type=int, default=5, help="RPM scenario: samples per request")
    p.add_argument("--tpm", type=int, default=60_000, help="TPM scenario: tokens/min (0 skips it)")
    p.add_argument("--tpm-requests", type=int, default=45, help="TPM scenario: requests (n=10 each)")
    p.add_argument(
        "--window-s", type=float, default=10.0, help="the sim's sliding-window length (RPM scenario)"
    )
    p.add_argument(
        "--tpm-window-s",
        type=float,
        default=60.0,
        help="the TPM scenario's window: 60 = per-minute limits as OpenAI documents them; a short window with "
        "big requests caps any pacer below 1 - request/window-budget (see the docstring)",
    )
    p.add_argument("--latency-ms", type=float, default=300.0, help="the sim's base latency per request")
    p.add_argument("--seq-max-s", type=float, default=45.0, help="time budget of each sequential client")
    p.add_argument("--repeats", type=int, default=1, help="runs per client; the table shows medians")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke version")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--windows", action="store_true", help="run the window shapes instead (see the docstring)")
    p.add_argument(
        "--shape-window-s",
        type=float,
        default=10.0,
        help="--windows: the provider's window (60 = real shapes)",
    )
    p.add_argument(
        "--long-windows", type=int, default=4, help="--windows: windows' worth of requests, long shape"
    )
    p.add_argument(
        "--shapes", default="two-windows,sub-window,long", help="--windows: comma-separated shapes to run"
    )
    p.add_argument(
        "--window-clients", default=",".join(WINDOW_CLIENTS), help="--windows: comma-separated clients"
    )
    args = p.parse_args(argv)
    if args.windows:
        if args.shape_window_s <= 0 or args.long_windows < 2 or args.repeats < 1:
            p.error("--shape-window-s must be > 0, --long-windows >= 2, --repeats >= 1")
        args.shapes = [s for s in args.shapes.split(",") if s]
        return run_windows(args)
    if min(args.rpm, args.requests, args.n, args.tpm_requests, args.repeats) < 1 or args.tpm < 0:
        p.error("--rpm, --requests, --n, --tpm-requests and --repeats must be >= 1; --tpm >= 0")
    rpm_clients = tuple(CLIENTS)
    scenarios = [
        Scenario("rpm", args.rpm, 0, args.n, args.requests, args.window_s, args.latency_ms, rpm_clients)
    ]
    if args.tpm:
        scenarios.append(
            Scenario(
                "tpm", 0, args.tpm, 10, args.tpm_requests, args.tpm_window_s, args.latency_ms, ("scotd",)
            )
        )
    if args.quick:
        scenarios = [
            replace(scenarios[0], rpm=600, requests=30, n=2, window_s=5.0, latency_base_ms=100.0),
            *[
                replace(sc, tpm=120_000, requests=12, window_s=5.0, latency_base_ms=100.0)
                for sc in scenarios[1:]
            ],
        ]
        args.seq_max_s = 6.0

    started = time.monotonic()
    init_ray()  # once, outside every client's wall time
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    runs: list[Measurement] = []
    for sc in scenarios:
        print(
            f"scenario {sc.name}: sim {' '.join(sc.sim_args())}, {sc.requests} requests, n={sc.n}", flush=True
        )
        for client in sc.clients:
            runs += [run_one(sc, client, args.seq_max_s) for _ in range(args.repeats)]
    medians = [
        median_of([r for r in runs if (r.scenario, r.client) == key])
        for key in dict.fromkeys((r.scenario, r.client) for r in runs)
    ]
    table, verdicts = render(scenarios, medians)
    total_s = time.monotonic() - started
    print(f"\n{table}\n\n(medians of {args.repeats} run(s) each; benchmark wall time {total_s:.0f}s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "method": f"server-side: GET /stats polled every {POLL_S}s; rates over first..last paid request",
        "args": vars(args),
        "scenarios": [asdict(sc) for sc in scenarios],
        "medians": [asdict(m) | {"share_429": round(m.share_429, 4)} for m in medians],
        "runs": [asdict(m) for m in runs],
        "verdicts": verdicts,
        "wall_s": round(total_s, 1),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
