"""Serving load: requests/s and p50/p99 latency at K = 1, 5, 10 votes, with and without batching.

    python benchmarks/serve_load.py [--clients 16] [--seconds 15] [--model DIR]

One run deploys the same student twice on a local Ray Serve (``@serve.batch`` on, and off via
``max_batch_size=1``) and drives each with ``--clients`` concurrent HTTP clients on 127.0.0.1 for
``--seconds`` per K. Prints a table and the batched/unbatched throughput ratio per K; medians over
``--repeats``. Without ``--model`` a tiny random-init student is built locally.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serving_common import model_or_tiny, start_serve_on_loopback
from scotd.httpjson import http_json
from scotd.serve.config import ServeConfig

QUESTION = {"question": "Gina has 10 pens. She sells 7. She buys 8 more. How many pens does Gina have now?",
            "choices": ["11", "3", "18", "10", "12"]}  # fmt: skip


def drive(url: str, clients: int, seconds: float, votes: int) -> dict[str, Any]:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                status = http_json("POST", url, {**QUESTION, "votes": votes}, timeout=120).status
            except OSError:
                status = 0
            with lock:
                results.append((status, time.monotonic() - start))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 180)
    elapsed = time.monotonic() - start
    ok = sorted(t for s, t in results if s == 200)
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "rps": round(len(ok) / elapsed, 2),
        "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
        "p99_ms": round(1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))], 1) if ok else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--ks", default="1,5,10")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    parser.add_argument("--model", help="HF model dir (default: a tiny random-init student)")
    parser.add_argument("--out", default="outputs/benchmarks/serve_load.json")
    args = parser.parse_args(argv)
    from ray import serve

    from scotd.ray_runtime import init_ray
    from scotd.serve.app import build_app

    init_ray()
    port = start_serve_on_loopback()
    ks = [int(k) for k in args.ks.split(",")]
    table: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_tiny(args.model, tmp)
        for batching in (True, False):
            name = "batched" if batching else "unbatched"
            cfg = ServeConfig.model_validate(
                {"model": str(model), "engine": args.engine, "batching": batching, "max_batch_size": 16, "max_votes": max(ks),
                 "max_new_tokens": 48}
            )  # fmt: skip
            serve.run(
                build_app(cfg, {"ray_actor_options": {"num_cpus": 1}, "max_ongoing_requests": 64}),
                name=name,
                route_prefix=f"/{name}",
            )
            url = f"http://127.0.0.1:{port}/{name}/v1/answer"
            http_json("POST", url, {**QUESTION, "votes": 1}, timeout=120)  # warm-up
            for k in ks:
                runs = [drive(url, args.clients, args.seconds, k) for _ in range(args.repeats)]
                table[f"{name}/K={k}"] = {
                    key: statistics.median(r[key] for r in runs if r[key] is not None)
                    if any(r[key] is not None for r in runs)
                    else None
                    for key in runs[0]
                }
            serve.delete(name)
    serve.shutdown()
    print(
        f"{args.clients} clients x {args.seconds:g} s per row, engine {args.engine}, medians of {args.repeats}"
    )
    print(f"{'config':<16} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for key, row in table.items():
        print(f"{key:<16} {row['rps']:>7} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['errors']:>7}")
    for k in ks:
        ratio = table[f"batched/K={k}"]["rps"] / max(table[f"unbatched/K={k}"]["rps"], 1e-9)
        print(f"K={k}: batched / unbatched requests/s = {ratio:.2f}x")
        table[f"ratio/K={k}"] = {"batched_over_unbatched_rps": round(ratio, 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
