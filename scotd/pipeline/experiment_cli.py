"""``scotd experiment``: a grid of students from one teacher ledger, as one resumable command.

An experiment is a pipeline whose config lists its students (conditions) and seeds
(``jobs/configs/experiments/*.yaml``): the same stages, fingerprints and resumability as
``scotd pipeline`` (no chain bought twice across conditions, finished students and evaluations
never redone), plus the experiment's table and figure in its report.
"""

from __future__ import annotations

import argparse
import sys

from scotd.config import ConfigError, config_from_args
from scotd.pipeline.cli import add_arguments
from scotd.pipeline.cli import run as run_pipeline_cli
from scotd.pipeline.config import PipelineConfig

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(PipelineConfig, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cfg.students:
        print(
            "error: an experiment lists its students (conditions): see jobs/configs/experiments/*.yaml, "
            "or run `scotd pipeline` for the default comparison",
            file=sys.stderr,
        )
        return 2
    return run_pipeline_cli(args)
