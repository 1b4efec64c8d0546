"""What the teacher bill is per route: online, batch, and batch + prompt caching.

Two parts, one run:

1. **Planner** (no network): the CSQA training set at N=30 (the whole split when the data is
   found — ``$SCOTD_DATA_DIR`` or ``../shared/data`` — else the test fixture's slice, scaled up
   to 9,741 questions), priced for gpt-4o-mini and gpt-4o through the chat API, with the
   demonstrations shuffled per question (the paper) and in one fixed order. Prompt tokens are
   counted with ``--tokenizer`` (tiktoken:o200k_base when it can be loaded, else the embedded
   teacher's word tokenizer, an approximation that the output names). Completion cost is shown
   at the ``max_tokens`` bound the budget reserves and at ``--mean-completion-tokens`` per sample.
2. **Measured** through the embedded teacher (``scotd teacher-sim``, gpt-4o-mini prices on both
   sides, caching threshold lowered to 256 tokens since the synthetic prefix is ~480): the same
   plan bought online, as a batch, and as a batch with a fixed prompt order — the provider's
   bill from its ``/stats`` and the wall time of each run, side by side.

    python benchmarks/teacher_cost.py [--questions 200] [--n 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scotd.artifacts import SampleSummary
from scotd.config import load_config
from scotd.sample.batchplan import route_costs
from scotd.sample.config import SampleConfig
from scotd.sample.plan import plan_requests
from scotd.tasks import load_task
from scotd.teacher.prices import price_for
from scotd.teacher.tokens import PromptCounter, TokenizerUnavailable, counter_for

CSQA_TRAIN = 9741
MODELS = ("gpt-4o-mini", "gpt-4o")
PRICES = {
    "prompt_price_per_1k": 0.00015,
    "completion_price_per_1k": 0.0006,
    "cached_prompt_price_per_1k": 0.000075,
}


def _counter(name: str) -> PromptCounter:
    if name == "sim":
        return counter_for("scotd-teacher-sim")
    try:
        return counter_for("x", name)
    except TokenizerUnavailable:
        print(f"({name} cannot be loaded here: counting with the embedded teacher's word tokenizer)")
        return counter_for("scotd-teacher-sim")


def planner(args: argparse.Namespace) -> list[str]:
    examples = load_task("csqa", "train").examples
    scale = CSQA_TRAIN / len(examples)
    counter = _counter(args.tokenizer)
    lines = [
        f"## Planner: CSQA train ({len(examples):,} questions loaded, scaled ×{scale:.2f} to {CSQA_TRAIN:,}), "
        f"N=30, chat API, prompt tokens by {counter.method}",
        "",
        "| model | order | shared prefix (tokens) | cacheable | online | batch | batch + cache | "
        f"batch + cache at {args.mean_completion_tokens} completion tokens/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for order in ("shuffled", "fixed"):
            cfg = load_config(
                SampleConfig,
                overrides={
                    "task": "csqa",
                    "n": 30,
                    "prompt_order": order,
                    "teacher": {"model": model, "api": "chat"},
                },
            )
            plan = [
                dataclasses.replace(p, est_prompt_tokens=counter.messages(p.request.messages))
                for p in plan_requests(examples, cfg)
            ]
            c = route_costs(plan, price_for(model), counter, cfg.teacher.cache_min_tokens)
            mean = price_for(model).cost(
                c["prompt_tokens"],
                len(plan) * 30 * args.mean_completion_tokens,
                c["cached_tokens"],
                batch=True,
            )
            lines.append(
                f"| {model} | {order} | {c['prefix_tokens']} | {'yes' if c['prefix_cacheable'] else 'no (< 1024)'} | "
                f"${c['online_usd'] * scale:,.2f} | ${c['batch_usd'] * scale:,.2f} | "
                f"${c['batch_cached_usd'] * scale:,.2f} | ${mean * scale:,.2f} |"
            )
    lines.append("")
    lines.append("Costs at the max_tokens=256 bound unless stated: an upper bound, what the budget reserves.")
    return lines


def measured(args: argparse.Namespace) -> list[str]:
    from scotd.sample.run import run_sample
    from scotd.teacher.sim.process import TeacherSimProcess

    sim_args = ["--latency-base-ms", "20", "--batch-line-ms", "2", "--cache-min-tokens", "256",
                "--price-prompt-per-1k", "0.00015", "--price-completion-per-1k", "0.0006"]  # fmt: skip
    rows: list[dict[str, Any]] = []
    for label, route, order in (
        ("online, shuffled", "online", "shuffled"),
        ("batch, shuffled", "batch", "shuffled"),
        ("batch, fixed order", "batch", "fixed"),
    ):
        with TeacherSimProcess(sim_args) as sim, tempfile.TemporaryDirectory() as out:
            cfg = load_config(
                SampleConfig,
                overrides={
                    "task": "synthetic", "limit": args.questions, "n": args.n, "out": out, "progress": False,
                    "prompt_order": order, "budget": PRICES, "batch": {"poll_s": 0.2},
                    "teacher": {"base_url": sim.base_url, "route": route, "cache_min_tokens": 256},
                },
            )  # fmt: skip
            t0 = time.monotonic()
            s = run_sample(cfg).summary
            wall = time.monotonic() - t0
            stats = sim.stats()
        assert isinstance(s, SampleSummary)
        rows.append({"label": label, "wall": wall, "bill": stats["cost_usd"], "ours": s.cost_usd["total"],
                     "cached": stats["tokens"].get("prompt_cached", 0), "prompt": stats["tokens"]["prompt"]})  # fmt: skip
    base = rows[0]["bill"]
    lines = [
        f"## Measured through the embedded teacher: synthetic, {args.questions} questions × n={args.n}, gpt-4o-mini prices",
        "",
        "| run | provider's bill | our ledger | vs online | cached prompt share | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | ${r['bill']:.5f} | ${r['ours']:.5f} | {r['bill'] / base:.2f}× | "
            f"{r['cached'] / max(1, r['prompt']):.0%} | {r['wall']:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--questions", type=int, default=200, help="measured part: synthetic questions")
    p.add_argument("--n", type=int, default=5, help="measured part: samples per question")
    p.add_argument(
        "--tokenizer", default="tiktoken:o200k_base", help="planner: prompt-token counter (or 'sim')"
    )
    p.add_argument(
        "--mean-completion-tokens", type=int, default=60, help="planner: expected tokens per chain"
    )
    p.add_argument("--skip-measured", action="store_true")
    args = p.parse_args(argv)
    lines = planner(args)
    if not args.skip_measured:
        lines += ["", *measured(args)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
