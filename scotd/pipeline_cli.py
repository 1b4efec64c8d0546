"""``scotd pipeline``: thin CLI over ``scotd.pipeline.run_pipeline``."""

from __future__ import annotations

import argparse
import sys

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.pipeline import PipelineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, PipelineConfig)


def run(args: argparse.Namespace) -> int:
    from scotd.pipeline import run_pipeline
    from scotd.sampling.run import TeacherAuthError, TeacherUnreachable
    from scotd.tasks import DataUnavailable, UnknownTask

    try:
        cfg = config_from_args(PipelineConfig, args)
        results = run_pipeline(cfg)
    except (ConfigError, UnknownTask, DataUnavailable, ValueError, TeacherAuthError, TeacherUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t = results["teacher"]
    if t.get("dry_run"):
        print(
            f"dry run: {t['requests']} teacher requests, {t['samples']} samples, cost ≤ ${t['max_cost_usd']:.4f}"
        )
        return 0
    print(
        f"\nteacher: {t['samples']} chains for {t['questions']} questions, accuracy {t['teacher_accuracy']:.1%}, "
        f"parse rate {t['parse_rate']:.1%}, {t['requests_this_run']['made']} requests this run"
    )
    print(f"{'corpus':<12} {'rows':>7} {'questions':>10} {'uniq/q':>7} {'distinct-2':>10}")
    for name, c in results["corpora"].items():
        print(
            f"{name:<12} {c['kept']:>7} {c['questions_kept']:>10} {c['unique_rationales_per_question']:>7} {c['distinct_2']:>10}"
        )
    print(f"\noutputs: {cfg.out}")
    return 0
