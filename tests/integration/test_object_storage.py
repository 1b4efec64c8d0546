"""Stages write to and read from ``s3://`` for real: a local S3-compatible server (moto) on 127.0.0.1.

Cluster nodes share no disk, so outputs live in object storage. pyarrow's S3 filesystem takes the
endpoint from ``AWS_ENDPOINT_URL`` and credentials from the usual variables, exactly as on a
cluster pointed at MinIO / R2 / GCS interop — so ``scotd sample`` and ``scotd corpus`` here run
unchanged, their Ray workers included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from scotd import storage
from scotd.localcluster.s3 import local_s3
from scotd.teacher.sim.process import TeacherSimProcess

BUCKET = "scotd-test"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port with one bucket; the env vars that point at it."""
    with local_s3(BUCKET) as env:
        yield env


@pytest.fixture
def on_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def _objects(prefix: str) -> list[str]:
    loc = storage.location(f"s3://{BUCKET}/{prefix}")
    return storage.list_files(loc)


def test_storage_round_trip(on_s3: dict[str, str]) -> None:
    loc = storage.location(f"s3://{BUCKET}/unit/run")
    assert not loc.is_local and loc.uri == f"s3://{BUCKET}/unit/run"
    storage.write_bytes(loc, "a/b.json", b'{"x": 1}')
    assert storage.read_bytes(loc, "a/b.json") == b'{"x": 1}'
    assert storage.exists(loc, "a/b.json") and not storage.exists(loc, "a/c.json")
    assert storage.read_bytes(loc, "missing.json") is None
    storage.write_bytes(loc.child("a"), "d.json", b"{}")
    assert storage.list_files(loc, "a", ".json") == ["a/b.json", "a/d.json"]
    storage.delete(loc, "a/b.json")
    assert storage.list_files(loc) == ["a/d.json"]


def test_local_dir_fetches_once_and_again_when_changed(on_s3: dict[str, str], tmp_path: Path) -> None:
    """What a serving replica does with a model export on s3:// (cluster/serve.yaml)."""
    export = storage.location(f"s3://{BUCKET}/unit/export")
    storage.write_bytes(export, "config.json", b'{"model_type": "llama"}')
    storage.write_bytes(export, "tokenizer/vocab.json", b"{}")
    cache = tmp_path / "cache"
    first = storage.local_dir(export.uri, str(cache))
    assert Path(first, "config.json").read_bytes() == b'{"model_type": "llama"}'
    assert Path(first, "tokenizer", "vocab.json").is_file()
    assert storage.local_dir(export.uri, str(cache)) == first, "an unchanged export is not fetched again"
    storage.write_bytes(export, "config.json", b'{"model_type": "opt"}')
    second = storage.local_dir(export.uri, str(cache))
    assert second != first and Path(second, "config.json").read_bytes() == b'{"model_type": "opt"}'
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]
    # A flat export (every file at the top, as `scotd distill` writes it) copies too.
    flat = storage.location(f"s3://{BUCKET}/unit/flat-export")
    storage.write_bytes(flat, "config.json", b"{}")
    assert Path(storage.local_dir(flat.uri, str(cache)), "config.json").read_bytes() == b"{}"
    # Paths and hub ids pass through untouched.
    assert storage.local_dir("facebook/opt-1.3b") == "facebook/opt-1.3b"
    assert storage.local_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        storage.local_dir(f"s3://{BUCKET}/unit/nothing-here", str(cache))


def _scotd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # No RAY_ADDRESS: the stage starts its own local Ray, whose workers inherit the S3 variables.
    full = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "scotd", *args],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_sample_and_corpus_on_s3(on_s3: dict[str, str]) -> None:
    teacher, corpus = f"s3://{BUCKET}/e2e/teacher", f"s3://{BUCKET}/e2e/corpus"
    fast = ["--latency-base-ms", "10", "--latency-per-token-ms", "0.1"]
    sample = ["sample", "--limit", "6", "--n", "4", "--out", teacher, "--progress", "false"]
    with TeacherSimProcess(fast) as sim:
        out = _scotd(on_s3, *sample, "--teacher.base-url", sim.base_url)
        assert out.returncode == 0, out.stderr[-4000:]
        assert sim.stats()["paid_requests"] == 6
    summary = json.loads(out.stdout.splitlines()[0])
    assert summary["samples"] == 24 and summary["complete"] is True
    files = _objects("e2e/teacher")
    assert {"config.yaml", "summary.json", "corpus.parquet"} <= set(files)
    assert len([f for f in files if f.startswith("ledger/responses/")]) == 6, (
        "one durable record per paid request"
    )

    # A re-run reads the ledger back from S3 and buys nothing.
    with TeacherSimProcess(fast) as sim:
        again = _scotd(on_s3, *sample, "--teacher.base-url", sim.base_url)
        assert again.returncode == 0, again.stderr[-4000:]
        assert sim.stats()["requests"] == 0

    built = _scotd(on_s3, "corpus", "--input", teacher, "--out", corpus, "--mode", "correct")
    assert built.returncode == 0, built.stderr[-4000:]
    fs, path = pafs.FileSystem.from_uri(corpus)
    assert {"train.parquet", "corpus_stats.json"} <= set(_objects("e2e/corpus"))
    with fs.open_input_stream(f"{path}/corpus_stats.json") as f:
        stats = json.loads(f.read())
    assert stats["samples_in"] == 24 and stats["mode"] == "correct"
    rows = pq.read_table(f"{path}/train.parquet", filesystem=fs).num_rows
    assert rows == stats["kept"] and rows > 0


PIPELINE_CONFIG = """\
task: synthetic
train_questions: 24
eval_questions: 12
n: 4
n_ablation: []
label_only: false
progress: false
distill:
  max_steps: 20
  warmup_steps: 2
  batch_size: 8
  num_workers: 1
  checkpoint_every_steps: 10
  eval_every_steps: 20
  log_every_steps: 10
eval:
  votes: 3
  ks: [1, 3]
  engine: hf
  max_new_tokens: 48
"""


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_pipeline_on_s3(on_s3: dict[str, str], tmp_path: Path) -> None:
    """The whole method with ``--out s3://``: Ray Train checkpoints to S3, the eval engines fetch
    the export from S3, the report is written there; a re-run redoes nothing."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE_CONFIG)
    run_uri = f"s3://{BUCKET}/pipeline/run"
    # Exports fetched from S3 land in this test's directory, not in ~/.cache.
    env = {**on_s3, "SCOTD_CACHE_DIR": str(tmp_path / "cache")}
    cmd = ("pipeline", "--config", str(config), "--out", run_uri)

    out = _scotd(env, *cmd)
    assert out.returncode == 0, out.stderr[-4000:]
    files = set(_objects("pipeline/run"))
    assert {"results.json", "report.md", "vote_curve.png", "n_ablation.png", "config.yaml"} <= files
    results = json.loads(storage.read_bytes(storage.location(run_uri), "results.json") or b"{}")
    planned = results["teacher"]["requests_planned"]
    assert planned == 24, "n=4 fits one request per training question"
    assert len([f for f in files if f.startswith("teacher/ledger/responses/")]) == planned
    assert "corpus/scotd/train.parquet" in files
    scotd = results["students"]["scotd"]
    assert scotd["train"]["final_step"] == 20
    run_name = scotd["train"]["run_name"]
    student = f"students/{run_name}"
    assert f"{student}/export/config.json" in files
    assert scotd["train"]["export_dir"] == f"{student}/export", "paths relative to the run: it can be copied"
    assert any(f.startswith(f"{student}/checkpoint_") for f in files), "Ray Train checkpoints on S3"
    assert {"eval/scotd/predictions.parquet", "eval/scotd/metrics.json"} <= files
    assert scotd["eval"]["questions"] == 12 and scotd["eval_reused"] is False
    assert list((tmp_path / "cache").iterdir()), "the eval engine read the export from S3"

    again = _scotd(env, *cmd)
    assert again.returncode == 0, again.stderr[-4000:]
    results = json.loads(storage.read_bytes(storage.location(run_uri), "results.json") or b"{}")
    assert results["teacher"]["requests_this_run"]["made"] == 0
    scotd = results["students"]["scotd"]
    assert scotd["train"]["trained_steps_this_run"] == 0 and scotd["train"]["run_name"] == run_name
    assert scotd["eval_reused"] is True
    assert set(results["run"]["reused_stages"]) == {"teacher", "distill:scotd", "eval:scotd"}
