"""What each stage hands to the next: one frozen type per stage output.

    scotd sample  -> TeacherSamples   ledger/, corpus.parquet (one row per chain), summary.json, errors.jsonl
    scotd corpus  -> TrainingSet      train.parquet (+ mode/variant metadata), corpus_stats.json
    scotd distill -> StudentRun       metrics.jsonl, checkpoints, export/ (Hugging Face), summary.json
    scotd eval    -> Evaluation       predictions.parquet, metrics.json, report.md, vote_curve.png
    scotd pipeline-> PipelineRun      teacher/, corpus/<student>/, students/, eval/<student>/, results.json

This module is the only place a stage's file names, Parquet columns and metadata keys are spelled.
Each artifact knows its ``uri`` (a local path or an object-storage URI), and ``locate(uri)`` checks
that what a stage needs is there, raising ``ArtifactMissing`` that names the command to run first.
Summaries are typed (``*Summary``); their ``to_dict()`` is exactly what ``summary.json`` holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from scotd import storage

S = TypeVar("S", bound="Summary")

CONFIG_FILE = "config.yaml"  # every stage writes its resolved config next to its output


class ArtifactMissing(FileNotFoundError):
    """A stage's input is not where it was pointed; the message names the command that makes it."""


def _read_json(loc: storage.Location, name: str) -> dict[str, Any] | None:
    raw = storage.read_bytes(loc, name)
    return json.loads(raw) if raw else None


def _write_json(loc: storage.Location, name: str, data: dict[str, Any]) -> None:
    storage.write_bytes(loc, name, json.dumps(data, indent=2, default=str).encode())


@dataclass(frozen=True)
class Summary:
    """A stage's ``summary.json`` as a typed record. Unknown keys (a newer writer) are ignored."""

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ── scotd sample ─────────────────────────────────────────────────────────────────────────────────

SAMPLE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("task", pa.string()),
        ("split", pa.string()),
        ("question", pa.string()),
        ("choice_labels", pa.list_(pa.string())),
        ("choice_texts", pa.list_(pa.string())),
        ("gold", pa.string()),
        ("sample_index", pa.int32()),
        ("raw_text", pa.string()),
        ("rationale", pa.string()),
        ("pred_label", pa.string()),
        ("parse_error", pa.string()),
        ("correct", pa.bool_()),
        ("teacher_model", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("mean_logprob", pa.float64()),
        ("request_key", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class SampleEstimate(Summary):
    """What ``scotd sample --dry-run`` reports: the run's size and worst-case cost, nothing bought."""

    dry_run: bool = True
    questions: int = 0
    already_in_ledger: int = 0
    requests: int = 0
    samples: int = 0
    est_prompt_tokens: int = 0
    max_completion_tokens: int = 0
    max_cost_usd: float = 0.0
    price_known: bool = False
    routes: dict[str, Any] = field(default_factory=dict)  # online / batch / prompt-cache costs side by side


@dataclass(frozen=True)
class SampleSummary(Summary):
    """``summary.json`` of a teacher run: what was planned, bought, parsed and paid."""

    task: str = ""
    split: str = ""
    teacher_model: str = ""
    questions: int = 0
    input_rows_rejected: dict[str, int] = field(default_factory=dict)
    requests_planned: int = 0
    requests_in_ledger: int = 0
    requests_this_run: dict[str, Any] = field(default_factory=dict)
    requests_missing: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    sampling_s: float = 0.0
    active_s: float = 0.0
    achieved_rpm: float = 0.0
    achieved_tpm: float = 0.0
    limits: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    samples_per_example: dict[str, float] = field(default_factory=dict)
    parse_rate: float = 0.0
    parse_errors: dict[str, int] = field(default_factory=dict)
    teacher_accuracy: float | None = None
    odd_responses: dict[str, int] = field(default_factory=dict)
    ledger_quarantined: list[dict[str, Any]] = field(default_factory=list)
    budget_stop: str | None = None
    complete: bool = False
    estimate_before_run: dict[str, Any] = field(default_factory=dict)
    route: str = "online"  # the route this run bought through: online | batch
    batches: dict[str, Any] = field(default_factory=dict)  # the batch route: states, lines, re-buys
    cost_split: dict[str, float] = field(default_factory=dict)  # USD by token kind and by route
    cache: dict[str, Any] = field(default_factory=dict)  # prompt-cache hits: tokens and share


@dataclass(frozen=True)
class TeacherSamples:
    """``scotd sample``'s output: the paid answers (``ledger/``) and one row per chain."""

    uri: str
    summary: SampleSummary | SampleEstimate | None = None

    LEDGER: ClassVar[str] = "ledger"
    SAMPLES: ClassVar[str] = "corpus.parquet"
    SUMMARY: ClassVar[str] = "summary.json"
    ERRORS: ClassVar[str] = "errors.jsonl"

    @property
    def location(self) -> storage.Location:
        return storage.location(self.uri)

    @property
    def ledger_uri(self) -> str:
        return self.location.child(self.LEDGER).uri

    @classmethod
    def locate(cls, uri: str) -> TeacherSamples:
        """The samples at ``uri`` (the stage's directory, or its ``corpus.parquet`` itself)."""
        loc = storage.location(uri)
        if loc.path.endswith(".parquet"):
            loc = storage.location(loc.uri.rsplit("/", 1)[0])
        if not storage.exists(loc, cls.SAMPLES):
            raise ArtifactMissing(
                f"no {cls.SAMPLES} in {loc.uri}: run `scotd sample` first or fix the input path"
            )
        raw = _read_json(loc, cls.SUMMARY)
        return cls(loc.uri, SampleSummary.from_dict(raw) if raw else None)

    def rows(self) -> list[dict[str, Any]]:
        loc = self.location
        try:
            return pq.read_table(loc.join(self.SAMPLES), filesystem=loc.fs).to_pylist()
        except (FileNotFoundError, OSError) as e:
            raise ArtifactMissing(f"cannot read {loc.join(self.SAMPLES)}: {e}") from None

    def write(self, table: pa.Table, summary: SampleSummary, errors: list[dict[str, Any]]) -> TeacherSamples:
        """Write the samples, the summary and the error log (each atomically); the complete artifact."""
        loc = self.location
        storage.write_parquet(loc, self.SAMPLES, table)
        _write_json(loc, self.SUMMARY, summary.to_dict())
        storage.write_bytes(loc, self.ERRORS, "".join(json.dumps(e) + "\n" for e in errors).encode())
        return dataclasses.replace(self, summary=summary)


# ── scotd corpus ─────────────────────────────────────────────────────────────────────────────────

# A training row: the question, the chain's place in the teacher's samples, and the target.
QUESTION_COLUMNS = ("example_id", "task", "split", "question", "choice_labels", "choice_texts", "gold")
TRAINING_COLUMNS = (*QUESTION_COLUMNS, "sample_index", "request_key", "rationale", "label")  # target last


@dataclass(frozen=True)
class CorpusSummary(Summary):
    """``corpus_stats.json``: what the filters kept and why the rest was dropped."""

    input: str = ""
    out: str = ""
    mode: str = ""
    variant: str = ""
    samples_in: int = 0
    questions_in: int = 0
    kept: int = 0
    questions_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    teacher_accuracy: float | None = None
    unique_rationales_per_question: float = 0.0
    distinct_2: float = 0.0
    kept_per_question: dict[str, float] = field(default_factory=dict)  # mean / min / max
    mean_logprob: float | None = None  # of the kept chains, under the teacher
    selection: dict[str, Any] = field(default_factory=dict)  # the §4 down-sampling, if any


@dataclass(frozen=True)
class TrainingSet:
    """``scotd corpus``'s output: ``train.parquet``, one row per (question, rationale, target label).

    ``mode`` and ``variant`` travel in the Parquet schema metadata, so the file alone says how it
    was built; ``digest`` (the file's bytes) identifies it for the training run's fingerprint.
    """

    uri: str
    file: str
    mode: str
    variant: str
    rows: int
    digest: str  # sha256 of the parquet file's bytes (first 16 hex digits)
    summary: CorpusSummary | None = None  # corpus_stats.json, when the corpus stage wrote one

    TRAIN: ClassVar[str] = "train.parquet"
    STATS: ClassVar[str] = "corpus_stats.json"
    MODE_KEY: ClassVar[bytes] = b"scotd.mode"
    VARIANT_KEY: ClassVar[bytes] = b"scotd.variant"

    @classmethod
    def locate(cls, path: str) -> TrainingSet:
        """The training set at ``path`` (a ``scotd corpus`` directory or its ``train.parquet``)."""
        loc = storage.location(path)
        file_given = loc.path.endswith(".parquet")
        file = loc.path if file_given else loc.join(cls.TRAIN)
        try:
            meta = pq.read_metadata(file, filesystem=loc.fs)
            digest = hashlib.sha256()
            with loc.fs.open_input_stream(file) as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
        except (FileNotFoundError, OSError) as e:
            raise ArtifactMissing(
                f"no training corpus at {file}: run `scotd corpus` first or fix --corpus ({e})"
            ) from None
        kv = meta.metadata or {}
        return cls(
            uri=loc.uri.rsplit("/", 1)[0] if file_given else loc.uri,
            file=loc.uri if file_given else f"{loc.uri}/{cls.TRAIN}",
            mode=kv.get(cls.MODE_KEY, b"all").decode(),
            variant=kv.get(cls.VARIANT_KEY, b"cot").decode(),
            rows=meta.num_rows,
            digest=digest.hexdigest()[:16],
            summary=cls._read_stats(storage.location(loc.uri.rsplit("/", 1)[0] if file_given else loc.uri)),
        )

    @classmethod
    def _read_stats(cls, loc: storage.Location) -> CorpusSummary | None:
        raw = _read_json(loc, cls.STATS)
        return CorpusSummary.from_dict(raw) if raw else None

    @classmethod
    def write(cls, out: storage.Location, rows: list[dict[str, Any]], mode: str, variant: str) -> TrainingSet:
        """Write ``train.parquet`` atomically (a reader never sees half a training set)."""
        out.fs.create_dir(out.path, recursive=True)
        table = pa.Table.from_pylist(rows) if rows else pa.table({"example_id": pa.array([], pa.string())})
        meta = {cls.MODE_KEY: mode.encode(), cls.VARIANT_KEY: variant.encode()}
        storage.write_parquet(out, cls.TRAIN, table.replace_schema_metadata(meta))
        return cls.locate(out.uri)

    def write_summary(self, summary: CorpusSummary) -> TrainingSet:
        _write_json(storage.location(self.uri), self.STATS, summary.to_dict())
        return dataclasses.replace(self, summary=summary)

    def ref(self) -> dict[str, Any]:
        """The identity recorded in a training run's summary (``corpus``)."""
        return {k: getattr(self, k) for k in ("uri", "file", "mode", "variant", "rows", "digest")}


# ── scotd distill ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DistillSummary(Summary):
    """``summary.json`` of a training run, written when it finishes."""

    status: str = ""
    run_name: str = ""
    fingerprint: str = ""
    corpus: dict[str, Any] = field(default_factory=dict)
    student: str = ""
    label_only: bool = False
    num_workers: int = 1
    strategy: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    final_step: int = 0
    train_loss_first: float | None = None
    train_loss_last: float | None = None
    val_loss_first: float | None = None
    val_loss_last: float | None = None
    tokens_per_s_median: float | None = None
    steps_per_s_median: float | None = None
    step_time_s_median: float | None = None
    mfu_median: float | None = None
    resumed_at_steps: list[int] = field(default_factory=list)
    export: str = ""
    checkpoint: str | None = None
    wall_s: float = 0.0
    started_from_checkpoint: bool = False
    restarts_after_failure: int = 0
    trained_steps_this_run: int = 0


@dataclass(frozen=True)
class StudentRun:
    """``scotd distill``'s output: one run directory, named by what it trains, and its export."""

    uri: str
    summary: DistillSummary | None = None

    SUMMARY: ClassVar[str] = "summary.json"
    METRICS: ClassVar[str] = "metrics.jsonl"
    EXPORT: ClassVar[str] = "export"
    EXPORT_MARKER: ClassVar[str] = "scotd_export.json"  # written last: present = complete export
    STUDENT_INIT: ClassVar[str] = "student_init"
    INIT_COMPLETE: ClassVar[str] = ".complete"
    VALIDATION: ClassVar[str] = "validation_questions.json"
    TRAINER_STATE: ClassVar[str] = "trainer_state.json"  # in each checkpoint (scotd.distill.checkpoint)

    @property
    def location(self) -> storage.Location:
        return storage.location(self.uri)

    @property
    def export_uri(self) -> str:
        return self.location.child(self.EXPORT).uri

    @classmethod
    def locate(cls, uri: str) -> StudentRun:
        """A finished run (its summary and a complete export must be there)."""
        run = cls(storage.location(uri).uri)
        summary = run.read_summary()
        if summary is None or run.exported_step() is None:
            raise ArtifactMissing(f"no finished training run at {run.uri}: run `scotd distill` first")
        return dataclasses.replace(run, summary=summary)

    def read_summary(self) -> DistillSummary | None:
        raw = _read_json(self.location, self.SUMMARY)
        return DistillSummary.from_dict(raw) if raw else None

    def write_summary(self, summary: DistillSummary) -> StudentRun:
        _write_json(self.location, self.SUMMARY, summary.to_dict())
        return dataclasses.replace(self, summary=summary)

    def exported_step(self) -> int | None:
        """The training step of the complete export, or None when there is none (yet)."""
        raw = _read_json(self.location.child(self.EXPORT), self.EXPORT_MARKER)
        return None if raw is None else raw.get("step")

    def metric_rows(self) -> list[dict[str, Any]]:
        """Rank 0's ``metrics.jsonl``: one record per logged step, evaluation or event."""
        raw = storage.read_bytes(self.location, self.METRICS)
        return [json.loads(x) for x in raw.decode().splitlines() if x.strip()] if raw else []

    def step_rows(self) -> list[dict[str, Any]]:
        """The training-step records only (train loss, throughput)."""
        return [r for r in self.metric_rows() if "event" not in r and "loss" in r]


# ── scotd eval ───────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class EvalSummary(Summary):
    """The ``run`` part of ``metrics.json``: which model, which questions, how fast."""

    model: str = ""
    name: str = ""
    task: str = ""
    split: str = ""
    engine: str = ""
    temperature: float = 0.0
    votes: int = 0
    wall_s: float = 0.0
    generate_s: float = 0.0
    questions_per_s: float = 0.0
    generated_tokens: int = 0
    generated_tokens_per_s: float = 0.0
    input_rows_rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """``scotd eval``'s output: every sampled rationale and the voted accuracies."""

    uri: str
    metrics: dict[str, Any] = field(default_factory=dict)  # greedy / sampled (maj@K, any-correct, ...)
    summary: EvalSummary | None = None
    reused: bool = False  # found finished by the pipeline rather than computed now

    PREDICTIONS: ClassVar[str] = "predictions.parquet"
    METRICS: ClassVar[str] = "metrics.json"
    REPORT: ClassVar[str] = "report.md"
    VOTE_CURVE: ClassVar[str] = "vote_curve.png"
    IDENTITY: ClassVar[str] = "pipeline_eval.json"  # what the pipeline evaluated here (model + settings)

    @property
    def location(self) -> storage.Location:
        return storage.location(self.uri)

    @classmethod
    def locate(cls, uri: str) -> Evaluation:
        loc = storage.location(uri)
        raw = _read_json(loc, cls.METRICS)
        if raw is None:
            raise ArtifactMissing(f"no {cls.METRICS} in {loc.uri}: run `scotd eval` first")
        run = raw.pop("run", None)
        return cls(loc.uri, raw, EvalSummary.from_dict(run) if run else None)

    def predictions(self) -> list[dict[str, Any]]:
        loc = self.location
        try:
            return pq.read_table(loc.join(self.PREDICTIONS), filesystem=loc.fs).to_pylist()
        except (FileNotFoundError, OSError) as e:
            raise ArtifactMissing(
                f"cannot read {loc.join(self.PREDICTIONS)}: run `scotd eval` first ({e})"
            ) from None

    def write_metrics(self, metrics: dict[str, Any], summary: EvalSummary) -> Evaluation:
        _write_json(self.location, self.METRICS, {**metrics, "run": summary.to_dict()})
        return dataclasses.replace(self, metrics=metrics, summary=summary)

    def identity(self) -> dict[str, Any] | None:
        return _read_json(self.location, self.IDENTITY)

    def write_identity(self, identity: dict[str, Any]) -> None:
        storage.write_bytes(self.location, self.IDENTITY, json.dumps(identity).encode())

    def as_result(self) -> dict[str, Any]:
        """What the pipeline's ``results.json`` keeps of an evaluation: its ``metrics.json``."""
        return {**self.metrics, **({"run": self.summary.to_dict()} if self.summary else {})}


# ── scotd pipeline ───────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class PipelineRun:
    """``scotd pipeline``'s directory: every stage's artifact in its place, and the report."""

    uri: str

    TEACHER: ClassVar[str] = "teacher"
    CORPORA: ClassVar[str] = "corpus"
    STUDENTS: ClassVar[str] = "students"
    EVALS: ClassVar[str] = "eval"
    RESULTS: ClassVar[str] = "results.json"
    REPORT: ClassVar[str] = "report.md"
    VOTE_CURVE: ClassVar[str] = "vote_curve.png"
    N_ABLATION: ClassVar[str] = "n_ablation.png"
    GRID: ClassVar[str] = "experiment.png"  # an experiment's conditions

    @property
    def location(self) -> storage.Location:
        return storage.location(self.uri)

    def teacher_uri(self, variant: str = "") -> str:
        """``teacher/``, or ``teacher-<variant>/`` for another teacher of the same experiment."""
        return self.location.child(f"{self.TEACHER}-{variant}" if variant else self.TEACHER).uri

    def training_set_uri(self, student: str) -> str:
        return self.location.child(self.CORPORA).child(student).uri

    def students_uri(self) -> str:
        return self.location.child(self.STUDENTS).uri

    def evaluation_uri(self, student: str, probe: str | None = None) -> str:
        """``eval/<student>`` on the test split; ``eval/<student>@<probe>`` on a robustness probe."""
        return self.location.child(self.EVALS).child(f"{student}@{probe}" if probe else student).uri

    def results(self) -> dict[str, Any] | None:
        return _read_json(self.location, self.RESULTS)
