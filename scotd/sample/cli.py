"""``scotd sample``: buy N chains of thought per question from a teacher, resumably."""

from __future__ import annotations

import argparse
import json
import sys

from scotd.artifacts import SampleEstimate
from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.sample.config import SampleConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SampleConfig)


def run(args: argparse.Namespace) -> int:
    from scotd.outlock import OutputLocked
    from scotd.sample.run import TeacherAuthError, TeacherUnreachable, run_sample
    from scotd.storage import StorageReadError
    from scotd.tasks import DataUnavailable, UnknownTask

    try:
        cfg = config_from_args(SampleConfig, args)
        if cfg.status:
            from scotd.sample.run import status

            print(status(cfg))
            return 0
        result = run_sample(cfg)
    except StorageReadError as e:
        print(f"error: {e}. Nothing more was bought; re-run once the storage answers.", file=sys.stderr)
        return 1
    except (ConfigError, UnknownTask, DataUnavailable, FileNotFoundError, ValueError, OutputLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TeacherAuthError, TeacherUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    s = result.summary
    if isinstance(s, SampleEstimate):
        print(
            f"dry run: {s.questions} questions, {s.already_in_ledger} requests already in the ledger; "
            f"would send {s.requests} requests for {s.samples} samples, "
            f"≈{s.est_prompt_tokens:,} prompt tokens + ≤{s.max_completion_tokens:,} completion tokens, "
            f"cost ≤ ${s.max_cost_usd:.4f}"
            + ("" if s.price_known else " (model price unknown: set budget.*_price_per_1k)")
        )
        if s.routes:
            from scotd.sample.batchplan import render_costs

            print(render_costs(s.routes))
        return 0
    assert s is not None
    print(
        json.dumps(
            {k: getattr(s, k) for k in ("samples", "teacher_accuracy", "parse_rate", "cost_usd", "complete")}
        )
    )
    print(f"corpus: {result.uri}/{result.SAMPLES}  summary: {result.uri}/{result.SUMMARY}")
    waiting = s.batches.get("waiting") if s.batches else None
    if waiting:
        print(
            f"{len(waiting)} batches still running at the provider; re-run the same command to collect "
            "them (`scotd sample --status` shows them).",
            file=sys.stderr,
        )
    if s.batches and s.batches.get("rejected"):
        print(
            "the provider refused a batch: " + "; ".join(s.batches["rejected"]) + ". Re-run to resume.",
            file=sys.stderr,
        )
    if s.budget_stop:
        print(
            f"stopped at the budget cap ({s.budget_stop}); re-run with a higher cap to resume.",
            file=sys.stderr,
        )
        return 4
    return 0 if s.complete else 1
