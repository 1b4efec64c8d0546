"""The distill stage's Ray Data pipeline (driver side): corpus -> tokenised train / validation datasets.

::

    read_parquet(<corpus>/train.parquet)
      └─ [--label-only] groupby(question) -> one row: the majority label, no rationale
      └─ TokenizeRows (actor pool; tokenizer built once per actor): split tag, input_ids, prompt_len, status
      └─ materialize ─┬─ train: split == train, status != target_too_long   (every worker reads it all)
                      └─ validation: split == validation, ...               (streaming-split across workers)

The train/validation split is by question id (a seeded hash order of the distinct ids), so no
question is in both. Rows whose target alone exceeds ``max_length`` are dropped here and counted
(``DataStats``), never silently.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from scotd.artifacts import TrainingSet
from scotd.distill.collator import encode_pair, texts_for_row
from scotd.student.factory import StudentSource, load_tokenizer, prepare_tokenizer
from scotd.voting import vote

if TYPE_CHECKING:
    import ray.data

# Columns the tokenisation stage writes (what the workers read).
COL_ROW_KEY = "row_key"
COL_EXAMPLE_ID = "example_id"
COL_SPLIT = "split_role"
COL_INPUT_IDS = "input_ids"
COL_PROMPT_LEN = "prompt_len"
COL_STATUS = "status"
TRAIN, VALIDATION = "train", "validation"
TOO_LONG = "target_too_long"


@dataclass
class DataStats:
    """Counts for the run summary: rows and questions per role, encode status per role, lengths."""

    rows: dict[str, int] = field(default_factory=dict)
    questions: dict[str, int] = field(default_factory=dict)
    status: dict[str, dict[str, int]] = field(default_factory=dict)
    max_tokens: int = 0
    mean_tokens: float = 0.0


def validation_questions(question_ids: list[str], fraction: float, cap: int, seed: int) -> set[str]:
    """``ceil(fraction * n)`` ids (at most ``cap``, leaving at least one for training), by seeded hash order."""
    ids = sorted(set(question_ids))
    if fraction <= 0 or len(ids) < 2:
        return set()
    n = min(cap, math.ceil(fraction * len(ids)), len(ids) - 1)
    ranked = sorted(ids, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    return set(ranked[:n])


def label_only_group(group: pa.Table) -> pa.Table:
    """One question's rows -> one label-only row: the majority label (earliest first on ties), no rationale."""
    rows = sorted(
        group.to_pylist(), key=lambda r: (r.get("sample_index") is None, r.get("sample_index") or 0)
    )
    label = vote([str(r["label"]) for r in rows]).label
    first = next(r for r in rows if str(r["label"]) == label)
    return pa.Table.from_pylist([{**first, "rationale": "", "label": label}], schema=group.schema)


class TokenizeRows:
    """Ray Data stage: corpus rows -> ``row_key, example_id, split_role, input_ids, prompt_len, status``."""

    def __init__(
        self,
        student: StudentSource,
        student_path: str | None,
        max_length: int,
        append_eos: bool,
        label_only: bool,
        validation_ids: list[str],
        answer_first: bool = False,
    ) -> None:
        self.tokenizer = load_tokenizer(student, student_path)
        self.layout = prepare_tokenizer(self.tokenizer)
        self.max_length = max_length
        self.append_eos = append_eos
        self.label_only = label_only
        self.answer_first = answer_first
        self.validation_ids = set(validation_ids)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out: dict[str, list[Any]] = {c: [] for c in (COL_ROW_KEY, COL_EXAMPLE_ID, COL_SPLIT, COL_INPUT_IDS)}
        out[COL_PROMPT_LEN], out[COL_STATUS] = [], []
        for row in batch.to_pylist():
            prompt, target = texts_for_row(row, self.label_only, self.answer_first)
            enc = encode_pair(self.tokenizer, self.layout, prompt, target, self.max_length, self.append_eos)
            qid = str(row["example_id"])
            out[COL_ROW_KEY].append(
                f"{qid}\x1f{row.get('sample_index')}\x1f{row.get('request_key')}\x1f{target}"
            )
            out[COL_EXAMPLE_ID].append(qid)
            out[COL_SPLIT].append(VALIDATION if qid in self.validation_ids else TRAIN)
            out[COL_INPUT_IDS].append(list(enc.input_ids))
            out[COL_PROMPT_LEN].append(enc.prompt_len)
            out[COL_STATUS].append(enc.status)
        schema = pa.schema(
            [
                (COL_ROW_KEY, pa.string()),
                (COL_EXAMPLE_ID, pa.string()),
                (COL_SPLIT, pa.string()),
                (COL_INPUT_IDS, pa.list_(pa.int32())),
                (COL_PROMPT_LEN, pa.int32()),
                (COL_STATUS, pa.string()),
            ]
        )
        return pa.Table.from_pydict(out, schema=schema)


def _role_filter(role: str) -> Callable[[pa.Table], pa.Table]:
    def keep(batch: pa.Table) -> pa.Table:
        mask = pc.and_(pc.equal(batch[COL_SPLIT], role), pc.not_equal(batch[COL_STATUS], TOO_LONG))
        return batch.filter(mask)

    return keep


@dataclass
class PreparedData:
    train: ray.data.Dataset
    validation: ray.data.Dataset | None
    stats: DataStats
    validation_ids: list[str]


def quiet(ds: ray.data.Dataset) -> ray.data.Dataset:
    """No progress bars for this dataset's executions (tiny, frequent: validation runs every eval)."""
    ds.context.enable_progress_bars = False
    ds.context.enable_operator_progress_bars = False
    return ds


def read_training_set(training: TrainingSet, label_only: bool) -> ray.data.Dataset:
    """The corpus rows, materialised once (question ids, tokenizer texts and tokenisation all read it)."""
    import ray.data

    ds = ray.data.read_parquet(training.file)
    if label_only and training.variant != "label-only":
        # Few partitions: the default (200) means hundreds of tiny shuffle tasks for a small corpus.
        partitions = max(1, min(16, training.rows // 50_000 + 1))
        ds = ds.groupby("example_id", num_partitions=partitions).map_groups(
            label_only_group, batch_format="pyarrow"
        )
    return ds.materialize()


def question_ids(ds: ray.data.Dataset) -> list[str]:
    ids: set[str] = set()
    for batch in ds.iter_batches(batch_size=4096, batch_format="pyarrow"):
        ids.update(str(q) for q in cast(pa.Table, batch)["example_id"].to_pylist())
    return sorted(ids)


def prepare(
    ds: ray.data.Dataset,
    *,
    student: StudentSource,
    student_path: str | None,
    max_length: int,
    append_eos: bool,
    label_only: bool,
    val_fraction: float,
    val_max_questions: int,
    seed: int,
    num_cpus: float = 0.5,
    answer_first: bool = False,
) -> PreparedData:
    """Split by question, tokenise on an actor pool, materialise, count. See the module docstring."""
    import ray.data

    val_ids = sorted(validation_questions(question_ids(ds), val_fraction, val_max_questions, seed))
    tokenized = ds.map_batches(
        TokenizeRows,
        fn_constructor_kwargs={
            "student": student,
            "student_path": student_path,
            "max_length": max_length,
            "append_eos": append_eos,
            "label_only": label_only,
            "validation_ids": val_ids,
            "answer_first": answer_first,
        },
        batch_format="pyarrow",
        batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=num_cpus,
    ).materialize()
    stats = DataStats()
    status: dict[str, Counter[str]] = {TRAIN: Counter(), VALIDATION: Counter()}
    questions: dict[str, set[str]] = {TRAIN: set(), VALIDATION: set()}
    lengths: list[int] = []
    for batch in tokenized.iter_batches(batch_size=4096, batch_format="pyarrow"):
        roles = batch[COL_SPLIT].to_pylist()
        for role, st, qid, ids in zip(
            roles,
            batch[COL_STATUS].to_pylist(),
            batch[COL_EXAMPLE_ID].to_pylist(),
            batch[COL_INPUT_IDS].to_pylist(),
            strict=True,
        ):
            status[role][st] += 1
            if st != TOO_LONG:
                questions[role].add(qid)
                lengths.append(len(ids))
    stats.status = {role: dict(sorted(c.items())) for role, c in status.items()}
    stats.rows = {role: sum(n for s, n in c.items() if s != TOO_LONG) for role, c in status.items()}
    stats.questions = {role: len(q) for role, q in questions.items()}
    stats.max_tokens = max(lengths, default=0)
    stats.mean_tokens = round(sum(lengths) / len(lengths), 1) if lengths else 0.0
    train = quiet(tokenized.map_batches(_role_filter(TRAIN), batch_format="pyarrow").materialize())
    validation = None
    if stats.rows[VALIDATION]:
        validation = quiet(
            tokenized.map_batches(_role_filter(VALIDATION), batch_format="pyarrow").materialize()
        )
    return PreparedData(train=train, validation=validation, stats=stats, validation_ids=val_ids)


def corpus_texts(ds: ray.data.Dataset, label_only: bool) -> list[str]:
    """Every corpus row's prompt and target, as separate texts: what the tiny tokenizer is trained on.

    Separate, because they are encoded separately (``encode_pair``): a target's first word has no
    leading space, and the tokenizer must know it in that form.
    """
    texts: list[str] = []
    for batch in ds.iter_batches(batch_size=4096, batch_format="pyarrow"):
        for row in cast(pa.Table, batch).to_pylist():
            texts.extend(texts_for_row(row, label_only))
    return texts
