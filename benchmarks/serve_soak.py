"""Mixed-traffic soak of the voting student: valid and hostile requests together, on 127.0.0.1.

    python benchmarks/serve_soak.py [--seconds 300] [--baseline-seconds 45] [--model DIR]

One local Ray Serve app (bearer auth on, the proxy's body bound on, the model deployment
autoscaling 1-2 replicas). First ``--baseline-seconds`` of one-vote answers alone (``--probe-clients``
back to back): their p99 is the reference. Then ``--seconds`` of the same probes beside heavier
valid traffic (K=5 answers, n=4 completions, greedy answers, chat) and hostile traffic (bad JSON,
bad labels, over-long prompts, oversized and chunked bodies, no token, unknown routes, wrong
methods, out-of-range fields). Then it waits for the model deployment to scale back down.

Pass criteria (exit status 0 when all hold; every figure is in ``--out``): no 5xx (and no
dropped connection) for a valid request; every invalid request a 4xx; the probes' p99 during the
soak within 3x their p99 alone; the model deployment scaled up to 2 replicas and back to 1.
Bounded: every client stops at its deadline, every request has a timeout, at most
``--max-requests`` requests in all.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serving_common import model_or_tiny, start_serve_on_loopback
from scotd.httpjson import http_json
from scotd.serve.config import ServeConfig

TOKEN_ENV = "SCOTD_SOAK_TOKEN"
QUESTION = {"question": "Gina has 10 pens. She sells 7. She buys 8 more. How many pens does Gina have now?",
            "choices": ["11", "3", "18", "10", "12"]}  # fmt: skip
Outcome = tuple[str, bool, int, float]  # (kind, valid, status (0 = no answer), seconds)


def _raw_chunked(base: str, path: str, token: str, total: int) -> int:
    """A chunked upload of ``total`` bytes over a raw socket; the reply's status (0: none)."""
    url = urlsplit(base + path)
    piece = b"x" * 65536
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            (f"POST {url.path} HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {token}\r\n"
             "Transfer-Encoding: chunked\r\n\r\n").encode()
        )  # fmt: skip
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and stopped reading
        sock.settimeout(60)
        head = sock.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0


def request_kinds(base: str, token: str) -> dict[str, tuple[bool, Callable[[], int]]]:
    """name -> (valid, send): each send returns the HTTP status."""
    auth = {"Authorization": f"Bearer {token}"}

    def send(method: str, path: str, **kw: Any) -> int:
        return http_json(method, base + path, timeout=120, **{"headers": auth, **kw}).status

    def post(path: str, body: Any, headers: dict[str, str] | None = None) -> Callable[[], int]:
        return lambda: send("POST", path, body=body, headers=auth if headers is None else headers)

    def raw(path: str, content: bytes) -> Callable[[], int]:
        return lambda: send("POST", path, data=content)

    prompt = "Q: Gina has 10 pens. She sells 7. How many pens does Gina have now?\nAnswer Choices:\n(a) 3\n(b) 17\nA: "
    return {
        # valid
        "one_vote": (True, post("/v1/answer", {**QUESTION, "votes": 1})),
        "answer_k5": (True, post("/v1/answer", {**QUESTION, "votes": 5})),
        "greedy_t0": (True, post("/v1/answer", {**QUESTION, "votes": 10, "temperature": 0})),
        "completion_n4": (True, post("/v1/completions", {"prompt": prompt, "n": 4, "max_tokens": 32})),
        "chat_n2_t1e-40": (
            True,
            post(
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": prompt}], "n": 2, "temperature": 1e-40},
            ),
        ),
        # invalid
        "bad_json": (False, raw("/v1/answer", b'{"question": "x", "choices": [')),
        "not_utf8": (False, raw("/v1/answer", b"\xff\xfe\xfd")),
        "dup_labels": (
            False,
            post(
                "/v1/answer",
                {**QUESTION, "choices": [{"label": "A", "text": "x"}, {"label": "a", "text": "y"}]},
            ),
        ),
        "label_injection": (
            False,
            post("/v1/answer", {**QUESTION, "choices": [{"label": ")\n", "text": "x"}, "y"]}),
        ),
        "long_prompt": (
            False,
            post("/v1/completions", {"prompt": "Q: " + "pens " * 12000 + "\nA: ", "n": 16}),
        ),
        "oversized_body": (False, post("/v1/answer", {**QUESTION, "question": "x" * 70_000})),
        "chunked_2mib": (False, lambda: _raw_chunked(base, "/v1/answer", token, 2 << 20)),
        "no_token": (False, post("/v1/answer", QUESTION, headers={})),
        "unknown_route": (False, lambda: send("GET", "/v2/nothing")),
        "wrong_method": (False, lambda: send("GET", "/v1/answer")),
        "temperature_5": (False, post("/v1/answer", {**QUESTION, "temperature": 5})),
        "votes_99": (False, post("/v1/answer", {**QUESTION, "votes": 99})),
        "n_99": (False, post("/v1/completions", {"prompt": prompt, "n": 99})),
    }


class Recorder:
    def __init__(self, max_requests: int) -> None:
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.max_requests = max_requests

    def full(self) -> bool:
        return len(self.outcomes) >= self.max_requests

    def add(self, o: Outcome) -> None:
        with self.lock:
            self.outcomes.append(o)


def client(
    rec: Recorder, kinds: dict[str, tuple[bool, Callable[[], int]]], names: list[str],
    deadline: float, pause_s: float,
) -> None:  # fmt: skip
    """Round-robin over ``names`` until ``deadline``, ``pause_s`` between requests."""
    i = 0
    while time.monotonic() < deadline and not rec.full():
        name = names[i % len(names)]
        valid, send = kinds[name]
        start = time.monotonic()
        try:
            status = send()
        except OSError:
            status = 0
        rec.add((name, valid, status, time.monotonic() - start))
        i += 1
        if pause_s:
            time.sleep(pause_s)


def run_clients(specs: list[tuple[list[str], float]], kinds: Any, seconds: float, rec: Recorder) -> None:
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client, args=(rec, kinds, names, deadline, pause)) for names, pause in specs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 300)


def p99(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else None


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[o[0]].append(o)
    table = {}
    for kind, rows in sorted(by_kind.items()):
        ok = [t for _, _, s, t in rows if 200 <= s < 300]
        table[kind] = {
            "valid": rows[0][1],
            "requests": len(rows),
            "statuses": dict(Counter(str(s) for _, _, s, _ in rows)),
            "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "p99_ms": round(1000 * (p99(ok) or 0), 1) if ok else None,
        }
    return table


def replicas(app: str) -> int:
    from ray import serve

    states: Any = serve.status().applications[app].deployments["StudentModel"].replica_states
    return int(states.get("RUNNING", 0))  # keys are ReplicaState, a str enum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=300.0, help="mixed traffic (>= 300 for the issue's target)"
    )
    parser.add_argument("--baseline-seconds", type=float, default=45.0)
    parser.add_argument("--probe-clients", type=int, default=2, help="one-vote clients, in both phases")
    parser.add_argument("--heavy-clients", type=int, default=3, help="clients sending heavier valid requests")
    parser.add_argument("--hostile-clients", type=int, default=2)
    parser.add_argument("--heavy-pause-s", type=float, default=0.5)
    parser.add_argument("--hostile-pause-s", type=float, default=0.2)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--cooldown-s", type=float, default=180.0, help="longest wait for the scale-down")
    parser.add_argument("--model", help="HF model dir (default: a tiny random-init student)")
    parser.add_argument("--out", default="outputs/benchmarks/serve_soak.json")
    args = parser.parse_args(argv)

    token = secrets.token_urlsafe(24)
    # The local cluster inherits these: replicas read the token, the proxy bounds bodies.
    os.environ[TOKEN_ENV] = token
    from scotd.serve.proxy_limits import proxy_env

    os.environ.update(proxy_env())
    from ray import serve

    from scotd.ray_runtime import init_ray
    from scotd.serve.app import build_app

    init_ray(quiet=True)
    port = start_serve_on_loopback(request_timeout_s=120)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_tiny(args.model, tmp)
        cfg = ServeConfig.model_validate(
            {"model": str(model), "engine": "hf", "threads": 1, "max_votes": 16, "max_new_tokens": args.max_new_tokens,
             "auth_token_env": TOKEN_ENV}
        )  # fmt: skip
        scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 3,
                   "downscale_delay_s": 20, "metrics_interval_s": 1, "look_back_period_s": 5}  # fmt: skip
        serve.run(
            build_app(cfg, {"autoscaling_config": scaling, "ray_actor_options": {"num_cpus": 1}}),
            name="soak",
            route_prefix="/soak",
        )
        base = f"http://127.0.0.1:{port}/soak"
        kinds = request_kinds(base, token)
        http_json("POST", f"{base}/v1/answer", {**QUESTION, "votes": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=120)  # fmt: skip

        timeline: list[tuple[float, int]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def watch() -> None:
            while not stop.is_set():
                timeline.append((round(time.monotonic() - t0, 1), replicas("soak")))
                stop.wait(1.0)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        probes = [(["one_vote"], 0.0)] * args.probe_clients
        alone = Recorder(args.max_requests)
        print(
            f"baseline: {args.probe_clients} one-vote clients alone for {args.baseline_seconds:g} s",
            flush=True,
        )
        run_clients(probes, kinds, args.baseline_seconds, alone)
        baseline_end = time.monotonic() - t0

        heavy = ["answer_k5", "completion_n4", "greedy_t0", "chat_n2_t1e-40"]
        hostile = [k for k, (valid, _) in kinds.items() if not valid]
        mixed = Recorder(args.max_requests)
        specs = [*probes, *[(heavy[i:] + heavy[:i], args.heavy_pause_s) for i in range(args.heavy_clients)],
                 *[(hostile[i:] + hostile[:i], args.hostile_pause_s) for i in range(args.hostile_clients)]]  # fmt: skip
        print(f"soak: {len(specs)} clients for {args.seconds:g} s", flush=True)
        soak_start = time.monotonic()
        run_clients(specs, kinds, args.seconds, mixed)
        soak_s = time.monotonic() - soak_start
        soak_end = time.monotonic() - t0

        deadline = time.monotonic() + args.cooldown_s
        while time.monotonic() < deadline and replicas("soak") > 1:
            time.sleep(1)
        stop.set()
        watcher.join(timeout=10)
        final = replicas("soak")
        timeline.append((round(time.monotonic() - t0, 1), final))
        serve.delete("soak")
    serve.shutdown()

    alone_p99 = p99([t for _, _, s, t in alone.outcomes if s == 200])
    probe_p99 = p99([t for k, _, s, t in mixed.outcomes if k == "one_vote" and s == 200])
    valid_bad = [o for o in mixed.outcomes + alone.outcomes if o[1] and not 200 <= o[2] < 300]
    invalid_not_4xx = [o for o in mixed.outcomes if not o[1] and not 400 <= o[2] < 500]
    peak_during = max((n for t, n in timeline if baseline_end <= t <= soak_end), default=0)
    ratio = (probe_p99 / alone_p99) if probe_p99 and alone_p99 else None
    checks = {
        "valid_requests_without_a_2xx": len(valid_bad),
        "invalid_requests_not_4xx": len(invalid_not_4xx),
        "probe_p99_ratio": round(ratio, 2) if ratio else None,
        "peak_replicas_during_soak": peak_during,
        "replicas_after_cooldown": final,
    }
    passed = (
        not valid_bad
        and not invalid_not_4xx
        and ratio is not None
        and ratio <= 3
        and peak_during >= 2
        and final == 1
    )
    report: dict[str, Any] = {
        "soak_seconds": round(soak_s, 1),
        "phases_s": {"baseline_end": round(baseline_end, 1), "soak_end": round(soak_end, 1)},
        "requests": {"baseline": len(alone.outcomes), "soak": len(mixed.outcomes)},
        "probe_p99_alone_ms": round(1000 * alone_p99, 1) if alone_p99 else None,
        "probe_p99_during_soak_ms": round(1000 * probe_p99, 1) if probe_p99 else None,
        "checks": checks,
        "passed": passed,
        "baseline": summarise(alone.outcomes),
        "soak": summarise(mixed.outcomes),
        "replica_timeline": timeline,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
    }
    print(f"{'kind':<16} {'valid':>5} {'reqs':>6} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for kind, row in report["soak"].items():
        print(f"{kind:<16} {row['valid']!s:>5} {row['requests']:>6} {row['p50_ms']!s:>8} {row['p99_ms']!s:>8}  {row['statuses']}")  # fmt: skip
    print(f"soak {soak_s:.0f} s, {len(mixed.outcomes)} requests; one-vote p99 alone {report['probe_p99_alone_ms']} ms, "
          f"during {report['probe_p99_during_soak_ms']} ms; {json.dumps(checks)}; passed: {passed}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
