"""``scotd eval``: vote over K sampled rationales per question and report like the paper."""

from __future__ import annotations

import argparse
import json
import sys

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.eval.config import EvalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recompute", metavar="DIR", help="recompute metrics.json from DIR/predictions.parquet only"
    )
    add_config_arguments(parser, EvalConfig)


def run(args: argparse.Namespace) -> int:
    from scotd.eval.run import recompute, run_eval
    from scotd.tasks import DataUnavailable, UnknownTask

    if args.recompute:
        print(json.dumps(recompute(args.recompute), indent=2))
        return 0
    try:
        cfg = config_from_args(EvalConfig, args)
        result = run_eval(cfg)
    except (ConfigError, UnknownTask, DataUnavailable, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m, s = result.metrics, result.summary
    assert s is not None
    if "greedy" in m:
        print(f"greedy: {100 * m['greedy']['accuracy']:.1f}%  {m['greedy']['ci95']}")
    for k, v in (m.get("sampled") or {}).get("maj_at_k", {}).items():
        print(f"maj@{k}: {100 * v['accuracy']:.1f}%  {v['ci95']}")
    print(f"{s.questions_per_s:.2f} questions/s, {s.generated_tokens_per_s:.0f} tokens/s ({s.engine})")
    print(f"report: {result.uri}/{result.REPORT}")
    return 0
