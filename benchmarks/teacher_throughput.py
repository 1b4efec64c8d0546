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
that limit is off); the scenario's *binding* limit is the one that is set. Our target is >= 90% of
the binding limit with < 2% of requests answered 429. Ratios are ours / theirs, on the binding
limit. The TPM scenario (n=10, no RPM limit) runs our sampler only, by default over a 60 s window
(per-minute limits, as OpenAI documents them). Over a short window no pacer of discrete requests
can beat ``1 - request_tokens / window_budget`` without 429s (a window can always hold one request
more than the pace allows): ``--tpm-window-s 10`` with ~1,100-token requests against a
10,000-token window shows the limiter's 429 back-off at work there. With ``--repeats K`` every
number is the median of K runs.
Sequential clients run until their requests or ``--seq-max-s`` run out, whichever comes first.

    python benchmarks/teacher_throughput.py            # full: ~4-5 min on 2 cores
    python benchmarks/teacher_throughput.py --quick    # ~1 min smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
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
from scotd.sample.plan import plan_requests
from scotd.sample.run import run_sample
from scotd.tasks import load_task
from scotd.teacher.client import TeacherRequest
from scotd.teacher.sim.process import TeacherSimProcess

POLL_S = 0.2
REFERENCE_SLEEP_S = 1.0  # the reference code's pause before every call
REFERENCE_RETRY_SLEEP_S = 45.0  # ... and after every error
SEQUENTIAL_ATTEMPTS = 3  # the reference retried forever; bounded here
TARGET_FRACTION, TARGET_429_SHARE = 0.90, 0.02


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


def scenario_requests(sc: Scenario) -> list[TeacherRequest]:
    """The exact requests ``run_sample`` plans for the same task, limit and n."""
    cfg = load_config(SampleConfig, overrides={"task": "synthetic", "limit": sc.requests, "n": sc.n})
    examples = load_task("synthetic", "train", limit=sc.requests, seed=cfg.seed).examples
    return [p.request for p in plan_requests(examples, cfg)]


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
    p.add_argument("--out", default="outputs/benchmarks/teacher_throughput.json")
    args = p.parse_args(argv)
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
