"""``scotd corpus``: turn a sampled corpus into a training set and print its statistics."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from scotd import storage
from scotd.config import ConfigError, StageConfig, add_config_arguments, config_from_args, write_resolved
from scotd.corpus import CorpusSpec, build
from scotd.outlock import OutputLocked, output_lock

TRAIN_FILE = "train.parquet"
MODE_METADATA_KEY = b"scotd.mode"


class CorpusConfig(StageConfig):
    input: str = Field(
        "outputs/sample/synthetic-train", description="`scotd sample` output dir, or a corpus.parquet"
    )
    out: str = Field(
        "outputs/corpus/synthetic-train-{mode}", description="output dir or URI ({mode}, {variant} filled in)"
    )
    mode: Literal["all", "correct", "balanced"] = "balanced"
    dedup: Literal["none", "exact", "near"] = "exact"
    near_threshold: float = Field(
        0.9, gt=0, le=1, description="word-trigram Jaccard above which rationales are near-duplicates"
    )
    per_example: int | None = Field(
        None, ge=1, description="keep the first N samples per question (N ablation)"
    )
    variant: Literal["cot", "label-only", "greedy"] = "cot"

    def out_dir(self) -> str:
        return self.out.format(mode=self.mode, variant=self.variant, per_example=self.per_example or "all")


def read_corpus(path: str) -> list[dict[str, object]]:
    loc = storage.location(path)
    target = loc.path if loc.path.endswith(".parquet") else loc.join("corpus.parquet")
    try:
        return pq.read_table(target, filesystem=loc.fs).to_pylist()
    except (FileNotFoundError, OSError) as e:
        raise FileNotFoundError(
            f"no corpus at {target}: run `scotd sample` first or fix --input ({e})"
        ) from None


def run_corpus(cfg: CorpusConfig) -> dict[str, object]:
    with output_lock(storage.location(cfg.out_dir()).uri, f"scotd corpus {cfg.mode}"):
        return _run_corpus(cfg)


def _run_corpus(cfg: CorpusConfig) -> dict[str, object]:
    rows = read_corpus(cfg.input)
    spec = CorpusSpec(cfg.mode, cfg.dedup, cfg.near_threshold, cfg.per_example, cfg.variant)
    train, stats = build(rows, spec)
    out = storage.location(cfg.out_dir())
    out.fs.create_dir(out.path, recursive=True)
    table = pa.Table.from_pylist(train) if train else pa.table({"example_id": pa.array([], pa.string())})
    table = table.replace_schema_metadata(
        {MODE_METADATA_KEY: cfg.mode.encode(), b"scotd.variant": cfg.variant.encode()}
    )
    storage.write_parquet(out, TRAIN_FILE, table)  # atomic: a reader never sees half a training set
    report = {"input": cfg.input, "out": out.uri, "mode": cfg.mode, "variant": cfg.variant, **asdict(stats)}
    storage.write_bytes(out, "corpus_stats.json", json.dumps(report, indent=2).encode())
    write_resolved(cfg, out.uri)
    return report


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
