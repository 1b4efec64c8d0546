"""``scotd corpus``: turn a sampled corpus into a training set and print its statistics."""

from __future__ import annotations

import argparse
import sys

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.corpus.config import CorpusConfig
from scotd.corpus.run import run_corpus
from scotd.outlock import OutputLocked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CorpusConfig)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(CorpusConfig, args)
        written = run_corpus(cfg)
    except (ConfigError, FileNotFoundError, OutputLocked, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = written.summary
    assert s is not None
    acc = s.teacher_accuracy
    print(
        f"corpus {s.mode}/{s.variant}: {s.kept} training rows for {s.questions_kept} "
        f"of {s.questions_in} questions (from {s.samples_in} samples)"
    )
    print(
        f"  teacher accuracy {acc if acc is None else f'{acc:.1%}'}; unique rationales/question "
        f"{s.unique_rationales_per_question}; distinct-2 {s.distinct_2}"
    )
    if s.selection:
        per_q = s.kept_per_question
        lp = "" if s.mean_logprob is None else f", mean teacher log-prob {s.mean_logprob}"
        print(
            f"  selection {s.selection['strategy']} K={s.selection['k']}: {per_q.get('mean')} chains/question "
            f"(min {per_q.get('min')}, max {per_q.get('max')}){lp}"
        )
    for reason, n in s.dropped.items():
        print(f"  dropped {n:>7} {reason}")
    print(f"  -> {written.file}")
    return 0
