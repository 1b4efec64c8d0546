"""``scotd pipeline``: thin CLI over ``scotd.pipeline.run.run_pipeline``."""

from __future__ import annotations

import argparse
import sys

from scotd.artifacts import PipelineRun
from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.pipeline.config import PipelineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, PipelineConfig)


def run(args: argparse.Namespace) -> int:
    from scotd.eval.report import results_table
    from scotd.outlock import OutputLocked
    from scotd.pipeline.report import headline_lines
    from scotd.pipeline.run import PipelineNotReady, run_pipeline
    from scotd.sample.run import TeacherAuthError, TeacherUnreachable
    from scotd.student.factory import StudentUnavailable
    from scotd.tasks import DataUnavailable, UnknownTask

    try:
        cfg = config_from_args(PipelineConfig, args)
        results = run_pipeline(cfg)
    except (
        ConfigError,
        PipelineNotReady,
        UnknownTask,
        DataUnavailable,
        StudentUnavailable,
        TeacherAuthError,
        TeacherUnreachable,
        ValueError,
        OutputLocked,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t = results["teacher"]
    if t.get("dry_run"):
        print(
            f"dry run: {t['requests']} teacher requests ({t['already_in_ledger']} already paid for), "
            f"{t['samples']} samples, {t['est_prompt_tokens']:,} prompt tokens, "
            f"≤ {t['max_completion_tokens']:,} completion tokens, cost ≤ ${t['max_cost_usd']:.2f}"
        )
        return 0
    print(
        f"\nteacher: {t['samples']:,} chains for {t['questions']:,} questions, per-chain accuracy "
        f"{t['teacher_accuracy']:.1%}, {t['requests_this_run']['made']} requests this run"
    )
    print(results_table({s["label"]: s["eval"] for s in results["students"].values()}))
    for line in headline_lines(results):
        print(f"- {line}")
    if results.get("grid"):
        from scotd.pipeline.report import grid_section

        print("\n".join(grid_section(results)[5:]))
    print(f"\ntotal {results['run']['wall_s']:.0f} s; report: {cfg.out}/{PipelineRun.REPORT}")
    return 0
