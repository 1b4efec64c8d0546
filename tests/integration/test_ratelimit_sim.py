"""The limiter against the real ``scotd teacher-sim`` (a subprocess on 127.0.0.1), no Ray: the
benchmark's asyncio driver (the sampler's policy per outcome) with the real ``RateLimiter``,
``call_teacher`` and headers. Timing targets live in ``benchmarks/teacher_throughput.py
--windows``; the bound here is generous because this machine may be busy.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.teacher_throughput import WindowShape, drive_async, planned
from scotd.teacher.ratelimit import RateLimiter
from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = pytest.mark.timeout(60)

NO_TOKEN_LATENCY = ["--latency-per-token-ms", "0"]


def test_a_three_window_job_spends_each_window_the_sim_has_free() -> None:
    # 10 requests a 2 s window (--rpm 300 --window-s 2), 30 requests: the ideal schedule sends 10
    # at 0 s, 2 s and 4 s. A limiter pacing at 95% from the first request would need ~6.3 s.
    shape = WindowShape("three-windows", per_window=10, requests=30, n=1, window_s=2.0, latency_base_ms=50)
    plan = planned(shape.requests, shape.n)
    with TeacherSimProcess([*shape.sim_args(), *NO_TOKEN_LATENCY]) as sim:
        run = asyncio.run(drive_async(sim.base_url, plan, RateLimiter(), concurrency=32))
        stats = sim.stats()
    assert run.statuses == {"ok": 30}
    assert run.limiter["rpm_limit"] == 300  # learnt from the answers' x-ratelimit-limit-requests
    assert stats["outcomes"]["429"] <= 1, stats["outcomes"]
    assert run.limiter["header_grants"] >= 25  # admitted on the provider's reported room
    ideal = shape.ideal_s(30, burst_s=0.05)  # 4.05 s
    assert run.job_s <= 1.5 * ideal, (run.job_s, ideal)
