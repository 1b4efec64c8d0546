"""``scotd corpus``: turn a sampled corpus into a training set and print its statistics."""

from __future__ import annotations

import argparse
import sys

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.corpus.config import CorpusConfig
from scotd.corpus.run import TRAIN_FILE, run_corpus
from scotd.outlock import OutputLocked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CorpusConfig)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(CorpusConfig, args)
        report = run_corpus(cfg)
    except (ConfigError, FileNotFoundError, OutputLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    acc = report["teacher_accuracy"]
    print(
        f"corpus {report['mode']}/{report['variant']}: {report['kept']} training rows for {report['questions_kept']} "
        f"of {report['questions_in']} questions (from {report['samples_in']} samples)"
    )
    print(
        f"  teacher accuracy {acc if acc is None else f'{acc:.1%}'}; unique rationales/question "
        f"{report['unique_rationales_per_question']}; distinct-2 {report['distinct_2']}"
    )
    for reason, n in dict(report["dropped"]).items():  # type: ignore[call-overload]
        print(f"  dropped {n:>7} {reason}")
    print(f"  -> {report['out']}/{TRAIN_FILE}")
    return 0
