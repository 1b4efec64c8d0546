"""``scotd distill``: train a student on a ``scotd corpus`` training set (Ray Train; resumable)."""

from __future__ import annotations

import argparse
import json
import sys

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.distill.config import DistillConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DistillConfig)


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 finished, 2 configuration / input problem (nothing started), 1 training failed."""
    from scotd.distill.run import run_distill
    from scotd.outlock import OutputLocked
    from scotd.student.factory import StudentUnavailable

    try:
        cfg = config_from_args(DistillConfig, args)
        result = run_distill(cfg)
    except (ConfigError, FileNotFoundError, StudentUnavailable, ValueError, OutputLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    s = result.summary
    assert s is not None
    keys = ["run_name", "final_step", "trained_steps_this_run", "train_loss_first", "train_loss_last"]
    keys += ["val_loss_first", "val_loss_last", "tokens_per_s_median", "restarts_after_failure"]
    print(json.dumps({k: getattr(s, k) for k in keys}))
    dropped = sum(c.get("target_too_long", 0) for c in s.data.get("status", {}).values())
    if dropped:
        print(
            f"warning: {dropped} rows had a target longer than max_length and were not trained on",
            file=sys.stderr,
        )
    print(f"run: {result.uri}  export: {result.export_uri}")
    return 0
