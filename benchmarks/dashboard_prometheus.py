"""Every panel of ``cluster/grafana/scotd.json``, queried in a real Prometheus that scraped a real run.

The dashboard test checks the JSON statically (every metric it names is defined); this script
checks it the way Grafana uses it. One local Ray head (``ray start --head
--metrics-export-port P``, Ray exporting every second), the real ``prometheus`` binary scraping
``127.0.0.1:P`` every second, and the stages as a user runs them, CLI drivers joined to the head:

1. ``scotd sample`` against the embedded teacher, rate-limited (the sim's 5 s window) so that the
   limiter's pacing gauges and the achieved rate move for ~30 s;
2. ``scotd distill`` of the tiny student on a demo corpus;
3. ``scotd eval`` of its export (greedy + 3 votes);
4. ``scotd serve`` of the export, with ~20 s of ``/v1/answer`` traffic (K = 2 and 4, and refused
   requests).

Then every target of every panel goes to Prometheus's ``/api/v1/query_range`` over the run, with
Grafana's variables filled in as Grafana fills them (``$run`` = All = ``.*``, ``$__rate_interval``
= four scrape intervals). Printed per target: accepted or Prometheus's error, series, points with
data, the last value and the largest (a rate panel reads 0 once its stage has ended). Exit 1 when
Prometheus refuses a query or a target that the run exercises returns nothing; targets that this
CPU run cannot fill (MFU needs a GPU, 429s need a provider that refuses) are listed with the reason.

    python benchmarks/dashboard_prometheus.py [--prometheus PATH]

Needs a Prometheus 2.x binary (Debian/Ubuntu: ``apt install prometheus``; or a release tarball
from prometheus.io); everything else is the project's own. Talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scotd.corpus.demo import write_demo_corpus  # noqa: E402
from scotd.httpjson import http_json  # noqa: E402
from scotd.localcluster.head import free_port, head_env, start_head, stop_head  # noqa: E402
from scotd.teacher.sim.process import TeacherSimProcess  # noqa: E402

DASHBOARD = REPO / "cluster" / "grafana" / "scotd.json"
SCRAPE_S = 1
# Targets this run cannot fill, and why (matched against the target's expression).
NOT_HERE = {
    "ray_scotd_distill_mfu": "MFU is set on GPUs only (absent, not zero, on CPU)",
    "ray_scotd_teacher_rate_limited_total": "no 429 happened: the limiter kept under the provider's window",
}


@contextlib.contextmanager
def prometheus(binary: str, target: str, workdir: Path) -> Iterator[str]:
    """A real Prometheus scraping ``target`` every second; yields its base URL."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n"
        f"scrape_configs:\n  - job_name: ray\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("Prometheus ready", lambda: _ok(f"{url}/-/ready"), 60)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        proc.kill()


def _ok(url: str) -> bool:
    try:
        return http_json("GET", url, timeout=5).status == 200
    except OSError:
        return False


def _wait(what: str, ready: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.5)


def scotd(env: dict[str, str], log: Path, *args: str, timeout_s: float = 600) -> None:
    """Run one scotd CLI driver joined to the head; its output in the error when it fails."""
    with log.open("w") as f:
        rc = subprocess.run(
            [sys.executable, "-m", "scotd", *args], env=env, stdout=f, stderr=f, timeout=timeout_s
        )
    if rc.returncode:
        raise RuntimeError(f"scotd {args[0]} exited {rc.returncode}:\n{log.read_text()[-3000:]}")


def serve_traffic(env: dict[str, str], model: str, log: Path, seconds: float) -> dict[int, int]:
    """``scotd serve`` the export and send /v1/answer requests for ``seconds``; statuses counted."""
    port = free_port()
    with log.open("w") as f:
        cmd = [sys.executable, "-m", "scotd", "serve", "--model", model, "--engine", "hf", "--threads", "1",
               "--max-new-tokens", "16", "--host", "127.0.0.1", "--port", str(port), "--name", "served"]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=f,
            stderr=f,
        )
    url = f"http://127.0.0.1:{port}/v1/answer"
    question = {
        "question": "Tom has 3 apples. He eats 1. How many apples does Tom have now?",
        "choices": ["2", "3"],
    }
    counts: dict[int, int] = {}
    try:
        _wait("the served student", lambda: proc.poll() is None and _answers(url, question), 300)
        end, i = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            body = {**question, "votes": 0} if i % 5 == 4 else {**question, "votes": 2 if i % 2 else 4}
            status = http_json("POST", url, body, timeout=60).status
            counts[status] = counts.get(status, 0) + 1
            i += 1
        time.sleep(4 * SCRAPE_S)  # the last requests reach Prometheus
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        proc.kill()
    return counts


def _answers(url: str, question: dict[str, Any]) -> bool:
    try:
        return http_json("POST", url, {**question, "votes": 1}, timeout=60).status == 200
    except OSError:
        return False


def targets() -> list[tuple[str, str]]:
    """(panel title, expression) of every target, with Grafana's variables as Grafana fills them."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", f"{4 * SCRAPE_S}s")
            out.append((panel["title"], re.sub(r'"\$run"', '".*"', expr)))
    return out


def query(
    url: str, expr: str, start: float, end: float
) -> tuple[str | None, int, int, float | None, float | None]:
    """(error, series, points, last value, largest value) of a range query."""
    qs = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "2"})
    r = http_json("GET", f"{url}/api/v1/query_range?{qs}", timeout=30)
    body = r.body if isinstance(r.body, dict) else {}
    if r.status != 200 or body.get("status") != "success":
        return str(body.get("error") or f"HTTP {r.status}"), 0, 0, None, None
    series = body["data"]["result"]
    points = [
        (float(t), float(v)) for s in series for t, v in s["values"] if v not in ("NaN", "+Inf", "-Inf")
    ]
    if not points:
        return None, len(series), 0, None, None
    return None, len(series), len(points), max(points)[1], max(v for _, v in points)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--serve-s", type=float, default=20.0, help="seconds of /v1/answer traffic")
    args = ap.parse_args()
    if not Path(args.prometheus).exists() and not shutil.which(args.prometheus):
        print(
            f"error: no Prometheus binary at {args.prometheus!r}: install one (Debian/Ubuntu: "
            "apt install prometheus; or prometheus.io/download) or pass --prometheus PATH",
            file=sys.stderr,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="scotd-dash-"))
    metrics_port = free_port()
    env = head_env({"RAY_metrics_report_interval_ms": "1000", "SCOTD_METRICS": "1"})
    head = start_head(
        8, False, [f"--metrics-export-port={metrics_port}"], env=env, log_path=str(work / "head.log")
    )
    env = {**env, "RAY_ADDRESS": head.address, "PYTHONPATH": str(REPO)}
    t0 = time.time()
    try:
        with prometheus(args.prometheus, f"127.0.0.1:{metrics_port}", work) as prom:
            stages: dict[str, float] = {}
            with TeacherSimProcess(
                ["--rpm", "120", "--tpm", "1000000", "--window-s", "5", "--latency-base-ms", "50"]
            ) as sim:
                start = time.monotonic()
                scotd(
                    env, work / "sample.log", "sample", "--task", "synthetic", "--limit", "60", "--n", "2",
                    "--out", str(work / "sample"), "--teacher.base-url", sim.base_url, "--progress", "false",
                    "--budget.max-cost-usd", "100", "--budget.prompt-price-per-1k", "0.5",
                    "--budget.completion-price-per-1k", "1.5",
                )  # fmt: skip
                stages["sample"] = time.monotonic() - start
            corpus = write_demo_corpus(
                work / "corpus" / "synthetic-train-balanced", questions=48, per_question=4
            )
            start = time.monotonic()
            scotd(
                env, work / "distill.log", "distill", "--corpus", str(corpus), "--student", "tiny",
                "--max-steps", "80", "--batch-size", "8", "--num-workers", "1", "--log-every-steps", "4",
                "--checkpoint-every-steps", "20", "--eval-every-steps", "40", "--out", str(work / "students"),
                "--name", "dash",
            )  # fmt: skip
            stages["distill"] = time.monotonic() - start
            export = str(work / "students" / "dash" / "export")
            start = time.monotonic()
            scotd(
                env, work / "eval.log", "eval", "--model", export, "--task", "synthetic", "--split", "test",
                "--limit", "20", "--engine", "hf", "--votes", "3", "--ks", "[1, 3]", "--max-new-tokens", "16",
                "--out", str(work / "eval"), "--progress", "false",
            )  # fmt: skip
            stages["eval"] = time.monotonic() - start
            start = time.monotonic()
            statuses = serve_traffic(env, export, work / "serve.log", args.serve_s)
            stages["serve"] = time.monotonic() - start
            time.sleep(3 * SCRAPE_S)
            end = time.time()
            rows = [(title, expr, *query(prom, expr, t0, end)) for title, expr in targets()]
    finally:
        stop_head(head.pid)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"stages (s): {json.dumps({k: round(v, 1) for k, v in stages.items()})}; served statuses {statuses}"
    )
    print(f"Prometheus {args.prometheus}, scrape every {SCRAPE_S} s, range {end - t0:.0f} s, step 2 s\n")
    print("| panel | target | accepted | series | points | last value | largest |")
    print("|---|---|---|---|---|---|---|")
    refused, empty = 0, 0
    for title, expr, error, series, points, last, top in rows:
        why = next((w for m, w in NOT_HERE.items() if m in expr), None)
        if error:
            refused += 1
        elif not points and why is None:
            empty += 1
        shown = " | ".join("-" if v is None else f"{v:.4g}" for v in (last, top))
        note = f" (no data: {why})" if not points and why else ""
        print(f"| {title} | `{expr[:90]}` | {error or 'yes'} | {series} | {points}{note} | {shown} |")
    print(f"\n{len(rows)} targets: {refused} refused by Prometheus, {empty} empty that this run should fill")
    return 1 if refused or empty else 0


if __name__ == "__main__":
    sys.exit(main())
