"""Loaders: real files, each malformed-row case, data-dir precedence, offline hub errors."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from scotd import paths
from scotd.tasks import DataUnavailable, UnknownTask, load_task, task_spec
from scotd.tasks.schema import Example


def test_csqa_real_rows(data_dir: Path) -> None:
    counts = {
        s: len(load_task("csqa", s, data_dir=data_dir).examples) for s in ("train", "validation", "test")
    }
    assert counts == {"train": 200, "validation": 100, "test": 20}  # the in-repo slice
    first = load_task("csqa", "train", data_dir=data_dir, limit=1).examples[0]
    assert first.id == "075e483d21c29a511267ef62bedc0461"
    assert first.labels == ("a", "b", "c", "d", "e")
    assert first.gold == "a"
    assert first.choice_text("b") == "enforce"
    test = load_task("csqa", "test", data_dir=data_dir, limit=5).examples
    assert all(ex.gold is None for ex in test)


def test_csqa_full_splits(full_data: Path) -> None:
    counts = {
        s: len(load_task("csqa", s, data_dir=full_data).examples) for s in ("train", "validation", "test")
    }
    assert counts == {"train": 9741, "validation": 1221, "test": 1140}
    assert (
        load_task("csqa", "train", data_dir=full_data, limit=1).examples[0].id
        == "075e483d21c29a511267ef62bedc0461"
    )


def test_openbookqa_full_splits(full_data: Path) -> None:
    train = load_task("openbookqa", "train", data_dir=full_data)
    assert len(train.examples) == 4957 and not train.rejected
    assert len(load_task("openbookqa", "test", data_dir=full_data).examples) == 500


def test_openbookqa_real_rows_and_missing_validation(data_dir: Path) -> None:
    train = load_task("openbookqa", "train", data_dir=data_dir)
    assert len(train.examples) == 100 and not train.rejected
    assert train.examples[0].id == "7-980" and train.examples[0].gold == "d"
    assert len(load_task("openbookqa", "test", data_dir=data_dir).examples) == 50
    start = time.monotonic()
    with pytest.raises(DataUnavailable) as err:
        load_task("openbookqa", "validation", data_dir=data_dir)
    assert time.monotonic() - start < 10, "offline hub fallback must fail fast"
    msg = str(err.value)
    assert "dev.jsonl" in msg and "allenai/openbookqa" in msg and "local splits: train, test" in msg


def test_quarel_reported_missing(data_dir: Path) -> None:
    with pytest.raises(DataUnavailable, match=r"quarel-v1-train\.jsonl.*allenai/quarel"):
        load_task("quarel", "train", data_dir=data_dir)


def test_hub_offline_env_is_respected(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable, match="HF_HUB_OFFLINE"):
        load_task("quarel", "validation", data_dir=data_dir)


def test_quarel_official_format(tmp_path: Path) -> None:
    (tmp_path / "quarel").mkdir()
    rows = [
        {"id": "q1", "question": "Which is faster? (A) a car (B) a snail", "answer_index": 0},
        {"id": "q2", "question": "Which is heavier? (A) a feather (B) a rock", "answer_index": 5},
    ]
    (tmp_path / "quarel" / "quarel-v1-dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_task("quarel", "validation", data_dir=tmp_path)
    assert result.examples == [
        Example("q1", "quarel", "validation", "Which is faster?", (("A", "a car"), ("B", "a snail")), "A")
    ]
    assert [(e.line, e.reason) for e in result.rejected] == [(2, "gold_not_a_label")]


def _mcq(
    id_: object = "x1", stem: object = "Where is milk kept?", labels: str = "ABC", gold: object = "A"
) -> dict:
    return {
        "id": id_,
        "question": {"stem": stem, "choices": [{"label": lab, "text": f"choice {lab}"} for lab in labels]},
        "answerKey": gold,
    }


def test_each_malformed_row_is_counted_with_line_and_reason(tmp_path: Path) -> None:
    (tmp_path / "csqa").mkdir()
    lines: list[bytes] = [
        json.dumps(_mcq("ok1")).encode(),
        json.dumps(_mcq(None)).encode(),  # 2 missing id
        json.dumps(_mcq("x3", labels="A")).encode(),  # 3 fewer than 2 choices
        json.dumps(_mcq("x4", gold="Z")).encode(),  # 4 gold not among labels
        json.dumps(_mcq("ok1")).encode(),  # 5 duplicate id
        b'{"id": "x6", "question": {"stem": "caf\xe9"}}',  # 6 not UTF-8
        b'{"id": "x7", "question": ',  # 7 bad JSON
        b"",  # 8 blank: skipped silently
        b"[1, 2]",  # 9 not an object
        json.dumps(_mcq("x10", stem="  ")).encode(),  # 10 empty question
        json.dumps(_mcq("ok2", labels="ABCDE", gold="E")).encode(),
    ]
    (tmp_path / "csqa" / "train_rand_split.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = load_task("csqa", "train", data_dir=tmp_path)
    assert [ex.id for ex in result.examples] == ["ok1", "ok2"]
    assert [(e.line, e.reason) for e in result.rejected] == [
        (2, "missing_id"),
        (3, "too_few_choices"),
        (4, "gold_not_a_label"),
        (5, "duplicate_id"),
        (6, "not_utf8"),
        (7, "bad_json"),
        (9, "not_an_object"),
        (10, "missing_question"),
    ]
    assert all(e.source.endswith("train_rand_split.jsonl") for e in result.rejected)
    assert "first seen on line 1" in str(result.rejected[3])
    assert result.rejected_by_reason()["bad_json"] == 1


def test_generic_jsonl_task(tmp_path: Path) -> None:
    path = tmp_path / "mine_{split}.jsonl"
    rows = [
        {"id": "a", "question": "2+2?", "choices": ["3", "4"], "answer": "b"},
        {
            "id": "b",
            "question": "Sky?",
            "choices": [{"label": "x", "text": "blue"}, {"label": "y", "text": "red"}],
            "answer": "blue",
        },
        {"id": "c", "question": "No gold", "choices": ["p", "q", "r"]},
        {"id": "d", "question": "Bad", "choices": ["only one"]},
        {"id": "e", "question": "Bad gold", "choices": ["p", "q"], "answer": "z"},
    ]
    (tmp_path / "mine_validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_task(f"jsonl:{path}", "validation")
    assert [(ex.id, ex.gold) for ex in result.examples] == [("a", "b"), ("b", "x"), ("c", None)]
    assert result.examples[0].choices == (("a", "3"), ("b", "4"))
    assert [(e.line, e.reason) for e in result.rejected] == [(4, "too_few_choices"), (5, "gold_not_a_label")]
    with pytest.raises(FileNotFoundError, match=r"mine_train\.jsonl"):
        load_task(f"jsonl:{path}", "train")


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    env_dir = tmp_path / "env"
    (env_dir / "csqa").mkdir(parents=True)
    (env_dir / "csqa" / "dev_rand_split.jsonl").write_text(json.dumps(_mcq("from-env")) + "\n")
    monkeypatch.setenv("SCOTD_DATA_DIR", str(env_dir))
    assert load_task("csqa", "validation").examples[0].id == "from-env"
    explicit = load_task("csqa", "validation", data_dir=data_dir, limit=1).examples[0]
    assert explicit.id != "from-env"
    # Neither given: ../shared/data beside the checkout, when there is one.
    monkeypatch.delenv("SCOTD_DATA_DIR")
    checkout = tmp_path / "work" / "main"
    checkout.mkdir(parents=True)
    shutil.copytree(data_dir / "csqa", tmp_path / "work" / "shared" / "data" / "csqa")
    monkeypatch.setattr(paths, "REPO_ROOT", checkout)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_task("csqa", "validation", limit=1).examples[0].id == explicit.id
    # No shared directory either: the user data directory that `scotd data fetch` fills.
    shutil.rmtree(tmp_path / "work" / "shared")
    shutil.copytree(data_dir / "csqa", tmp_path / "xdg" / "scotd" / "data" / "csqa")
    assert paths.resolve_data_dir() == tmp_path / "xdg" / "scotd" / "data"
    assert load_task("csqa", "validation", limit=1).examples[0].id == explicit.id


def test_unknown_task_and_split() -> None:
    with pytest.raises(UnknownTask, match="csqa, openbookqa, quarel, synthetic, jsonl:PATH"):
        task_spec("cqa")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_task("csqa", "dev")


def test_limit_and_row_roundtrip(data_dir: Path) -> None:
    examples = load_task("csqa", "validation", data_dir=data_dir, limit=7).examples
    assert len(examples) == 7
    assert all(Example.from_row(ex.to_row()) == ex for ex in examples)
