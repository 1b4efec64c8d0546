"""The teacher stage's money-safety parts without Ray: reading odd answers, the ledger healing
itself, storage that never calls a failed read "absent", atomic writes and the output lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from scotd import storage
from scotd.config import ConfigError, load_config
from scotd.outlock import OutputLocked, output_lock
from scotd.sample.config import SampleConfig
from scotd.sample.records import settle, view
from scotd.teacher.client import TeacherRequest, interpret, samples_from_body
from scotd.teacher.ledger import Ledger
from scotd.teacher.prices import Price
from scotd.teacher.sim.server import bend

USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}


def _body(choices: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "choices": [{"index": i, "text": f"s{i}", "finish_reason": "stop"} for i in range(choices)],
        "usage": USAGE,
        **extra,
    }


@pytest.mark.parametrize(
    ("raw", "usage", "problems"),
    [
        (json.dumps(_body()), USAGE, ()),
        (json.dumps(bend(_body(), "usage_missing")), None, ("usage_missing",)),
        (json.dumps(bend(_body(), "usage_null")), None, ("usage_missing",)),
        (json.dumps(bend(_body(), "usage_string")), None, ("usage_malformed",)),
        (json.dumps(bend(_body(), "usage_strings")), USAGE, ()),
        (json.dumps(_body(usage={"prompt_tokens": 10.0, "completion_tokens": "20"})), USAGE, ()),
        (json.dumps(_body(usage={"prompt_tokens": -1, "completion_tokens": 20})), None, ("usage_malformed",)),
        (
            json.dumps(_body(usage={"prompt_tokens": "NaN", "completion_tokens": 2})),
            None,
            ("usage_malformed",),
        ),
        (
            json.dumps(_body(usage={"prompt_tokens": True, "completion_tokens": 2})),
            None,
            ("usage_malformed",),
        ),
        (json.dumps(bend(_body(), "short_choices")), USAGE, ("short_choices",)),
        (json.dumps(_body(choices=0, usage=None)), None, ("usage_missing", "short_choices")),
    ],
)
def test_odd_but_usable_answers_are_read_not_crashed_on(
    raw: str, usage: dict[str, int] | None, problems: tuple[str, ...]
) -> None:
    seen = interpret(raw, 2)
    assert seen.body is not None and seen.unusable == ""
    assert seen.usage == usage and seen.problems == problems


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"id": "cmpl-1", "choices": [{"te', "not JSON"),
        ("<html><head><title>502 Bad Gateway</title></head></html>", "HTML page"),
        ("<!DOCTYPE html>\n<html>oops", "HTML page"),
        (json.dumps({"error": {"message": "overloaded", "type": "server_error"}}), "error object"),
        (json.dumps({"error": "overloaded"}), "overloaded"),
        (json.dumps([1, 2]), "JSON list"),
        (json.dumps({"id": "x"}), "no 'choices'"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ("", "not JSON"),
    ],
)
def test_answers_with_no_answer_say_why(raw: str, reason: str) -> None:
    seen = interpret(raw, 2)
    assert seen.body is None and reason in seen.unusable


def test_samples_tolerate_odd_choices() -> None:
    body = {
        "choices": [
            {"index": 1, "text": 5, "logprobs": {"token_logprobs": ["x"]}},
            "not an object",
            {"index": 0, "text": "a", "finish_reason": 3, "logprobs": {"token_logprobs": [-1.0, None]}},
        ]
    }
    samples = samples_from_body("completions", body)
    assert [s.text for s in samples] == ["a", "", ""]
    assert samples[0].token_logprobs == [-1.0] and samples[0].finish_reason is None
    assert samples[1].token_logprobs is None
    chat = samples_from_body("chat", {"choices": [{"message": None}, {"message": {"content": "hi"}}]})
    assert [s.text for s in chat] == ["", "hi"]


def test_unknown_usage_is_charged_at_the_reservation_bound() -> None:
    price = Price(1.0, 2.0)
    raw_record = {"key": "k", "raw_body": json.dumps(bend(_body(), "usage_string"))}
    settled = settle(raw_record, view(raw_record, 2), price, est_prompt_tokens=50, n=2, max_tokens=100)
    assert settled["usage_estimated"] and settled["usage"]["completion_tokens"] == 200
    assert settled["cost_usd"] == pytest.approx(price.cost(50, 200))
    assert settled["anomalies"] == ["usage_malformed"] and settled["raw_body"] == raw_record["raw_body"]
    exact = settle({"raw_body": json.dumps(_body())}, interpret(json.dumps(_body()), 2), price, 50, 2, 100)
    assert not exact["usage_estimated"] and exact["usage"] == USAGE


def test_omit_fields_leaves_them_out_of_the_body_and_is_validated() -> None:
    req = TeacherRequest("completions", "m", "p", (), 2, 1.0, 1.0, 16, ("\n\n",), True, 7)
    assert "seed" in req.body()
    body = req.body(("seed", "top_p"))
    assert "seed" not in body and "top_p" not in body and body["n"] == 2 and body["prompt"] == "p"
    cfg = load_config(SampleConfig, overrides={"teacher": {"omit_fields": "seed, logprobs"}})
    assert cfg.teacher.omit_fields == ("logprobs", "seed")
    with pytest.raises(ConfigError, match="omit_fields"):
        load_config(SampleConfig, overrides={"teacher": {"omit_fields": "model"}})


# --- storage ------------------------------------------------------------------------------------


class FlakyHandler(pafs.FileSystemHandler):
    """A real local filesystem whose first ``fail`` reads, writes and lookups each raise an I/O
    error, as an object store under load does (pyarrow wraps this as a filesystem, like S3's)."""

    def __init__(self, fail: int) -> None:
        self.local = pafs.LocalFileSystem()
        self.fail = fail
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.calls[op] <= self.fail:
            raise OSError(f"{op}: AWS Error SLOW_DOWN during {op} operation (simulated 503)")

    def open_input_stream(self, path: str) -> Any:
        self._maybe_fail("read")
        return self.local.open_input_stream(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self._maybe_fail("info")
        return self.local.get_file_info(paths)

    def get_type_name(self) -> str:
        return "flaky"

    def equals(self, other: Any) -> bool:
        return self is other

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self._maybe_fail("write")
        return self.local.open_output_stream(path)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.local.open_append_stream(path)

    def normalize_path(self, path: str) -> str:
        return path


def _flaky(tmp_path: Path, fail: int) -> tuple[storage.Location, FlakyHandler]:
    handler = FlakyHandler(fail)
    return storage.Location(pafs.PyFileSystem(handler), str(tmp_path), f"flaky://{tmp_path}"), handler


def test_a_passing_read_error_is_retried_not_taken_for_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "READ_BACKOFF_S", 0.001)
    (tmp_path / "paid.json").write_text('{"raw_body": "{}"}')
    loc, handler = _flaky(tmp_path, fail=2)
    assert storage.read_bytes(loc, "paid.json") == b'{"raw_body": "{}"}'
    assert handler.calls["read"] == 3
    assert storage.read_bytes(loc, "missing.json") is None  # absent is still absent
    loc, handler = _flaky(tmp_path, fail=2)
    assert storage.exists(loc, "paid.json") and handler.calls["info"] == 3
    loc, handler = _flaky(tmp_path, fail=2)
    assert storage.list_files(loc, suffix=".json") == ["paid.json"]  # not [] on a failed listing
    loc, handler = _flaky(tmp_path, fail=2)
    storage.write_bytes(loc, "new.json", b"paid")
    assert (tmp_path / "new.json").read_bytes() == b"paid" and handler.calls["write"] == 3
    loc, _ = _flaky(tmp_path, fail=100)
    with pytest.raises(storage.StorageReadError, match=r"paid\.json"):
        storage.read_bytes(loc, "paid.json")
    with pytest.raises(storage.StorageError, match=r"new\.json"):
        storage.exists(loc, "new.json")


def test_final_files_are_replaced_atomically(tmp_path: Path) -> None:
    loc = storage.location(str(tmp_path))
    storage.write_parquet(loc, "corpus.parquet", pa.table({"x": [1, 2]}))
    assert pq.read_table(tmp_path / "corpus.parquet").column("x").to_pylist() == [1, 2]

    def torn(f: Any) -> None:
        f.write(b"PAR1 half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        storage._replace_atomically(str(tmp_path / "corpus.parquet"), torn)
    assert pq.read_table(tmp_path / "corpus.parquet").column("x").to_pylist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.parquet"]  # no temp file left


# --- the ledger heals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b'{"key": "k", "raw_body": "{\\"choi', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'["a list"]', "not a response record"),
    ],
)
def test_unreadable_records_are_quarantined_and_named(tmp_path: Path, data: bytes, reason: str) -> None:
    ledger = Ledger(str(tmp_path / "ledger"))
    key = "ab" + "0" * 62
    ledger.put("cd" + "0" * 62, {"raw_body": "{}"})
    path = tmp_path / "ledger" / "responses" / "ab" / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert ledger.get(key) is None
    assert not path.exists() and ledger.keys() == {"cd" + "0" * 62}
    (entry,) = ledger.quarantined
    assert entry["key"] == key and reason in entry["reason"] and entry["file"].endswith(f"{key}.json")
    assert Path(entry["moved_to"]).read_bytes() == data  # kept for a post-mortem, not deleted


def test_set_aside_answers_are_counted_per_key(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    key = "ab" + "1" * 62
    ledger.put(key, {"raw_body": "<html>"})
    assert ledger.set_aside_unusable(key, {"raw_body": "<html>"}, "an HTML page") == 1
    assert not ledger.has(key)
    assert ledger.set_aside_unusable(key, {"raw_body": "x"}, "not JSON") == 2
    assert ledger.unusable() == {key: ["an HTML page", "not JSON"]} and ledger.unusable_count(key) == 2


# --- the output lock --------------------------------------------------------------------------------

_HOLD = textwrap.dedent(
    """
    import sys, time
    from scotd.outlock import output_lock
    with output_lock(sys.argv[1], "scotd sample (holder)"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_second_run_on_a_directory_refuses_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with (
        output_lock(out, "first"),
        pytest.raises(OutputLocked, match=f"first \\(pid {os.getpid()}"),
        output_lock(out, "second"),
    ):
        pass
    with output_lock(out, "third"):  # released on exit
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, out], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}") as err, output_lock(out, "me"):
            pass
        assert time.monotonic() - start < 1 and "(holder)" in str(err.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    with output_lock(out, "after kill -9"):  # the kernel dropped the dead holder's lock
        pass
