"""The corpus stage's driver: teacher samples -> filtered training set (``train.parquet``) + statistics."""

from __future__ import annotations

import json
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq

from scotd import storage
from scotd.config import write_resolved
from scotd.corpus.config import CorpusConfig
from scotd.outlock import output_lock
from scotd.selection import CorpusSpec, build

TRAIN_FILE = "train.parquet"
MODE_METADATA_KEY = b"scotd.mode"


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
