"""Corpus filters: from the teacher's samples to a training set (pure; no Ray, no network).

Settings (the paper's names):
- ``all``      few-shot: every parsed sample, trained on the teacher's own label.
- ``correct``  supervised: only samples whose label matches gold.
- ``balanced`` supervised, the paper's default: the ``correct`` set, from which training draws
               ONE rationale per question per epoch (so easy questions do not dominate).
Options: exact / near-duplicate rationale removal per question; ``per_example`` K with ``select``:
``first`` (the first K samples of each question, before filtering: the N ablation) or a paper §4
down-sampling of the filtered chains to K (``random``, ``diverse``, ``likelihood``, ``open-ended``:
``scotd.subsample``); and variants ``label-only`` (one row per question, no rationale) and
``greedy`` (the first — greedy — chain per question).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from scotd.artifacts import TRAINING_COLUMNS
from scotd.subsample import Strategy, Subsample, choose
from scotd.voting import vote

Mode = Literal["all", "correct", "balanced"]
Dedup = Literal["none", "exact", "near"]
Variant = Literal["cot", "label-only", "greedy"]

# Drop reasons: stable strings, counted in the statistics.
DROP_REQUEST_ERROR = "request_error"
DROP_UNPARSEABLE = "unparseable"
DROP_WRONG = "wrong_label"
DROP_NO_GOLD = "no_gold"
DROP_PER_EXAMPLE = "beyond_per_example"
DROP_DUP_EXACT = "duplicate_exact"
DROP_DUP_NEAR = "duplicate_near"
DROP_VARIANT = "variant_one_per_question"
DROP_SUBSAMPLE = "beyond_selection"
DROP_QUESTION_FRACTION = "question_not_in_fraction"


@dataclass(frozen=True)
class CorpusSpec:
    mode: Mode = "balanced"
    dedup: Dedup = "exact"
    near_threshold: float = 0.9
    per_example: int | None = None
    variant: Variant = "cot"
    select: Strategy = "first"
    seed: int = 0
    embedder: str = "tfidf"
    question_fraction: float = 1.0  # data scaling: this share of the questions (nested across fractions)


@dataclass
class CorpusStats:
    samples_in: int = 0
    questions_in: int = 0
    kept: int = 0
    questions_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    teacher_accuracy: float | None = None
    unique_rationales_per_question: float = 0.0
    distinct_2: float = 0.0
    kept_per_question: dict[str, float] = field(default_factory=dict)
    mean_logprob: float | None = None
    selection: dict[str, Any] = field(default_factory=dict)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


def _exact_key(text: str) -> str:
    """Exact duplicates ignore case, spacing and final punctuation, nothing else."""
    return " ".join(text.lower().split()).rstrip(" .!?")


def _shingles(text: str, k: int = 3) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    return {tuple(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams (diversity of the rationales)."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        words = _norm(text).split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def build(rows: list[dict[str, Any]], spec: CorpusSpec) -> tuple[list[dict[str, Any]], CorpusStats]:
    """Filter corpus rows (``scotd sample`` schema) into training rows.

    Each training row keeps the question fields plus ``rationale`` and ``label`` (the target
    label: teacher's in ``all``, gold in ``correct``/``balanced``), ``sample_index``, ``request_key``.
    """
    drops: Counter[str] = Counter()
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_q[r["example_id"]].append(r)
    if spec.question_fraction < 1.0:
        keep = question_subset(list(by_q), spec.question_fraction, spec.seed)
        drops[DROP_QUESTION_FRACTION] += sum(len(g) for q, g in by_q.items() if q not in keep)
        by_q = defaultdict(list, {q: g for q, g in by_q.items() if q in keep})
        rows = [r for g in by_q.values() for r in g]
    stats = CorpusStats(samples_in=sum(1 for r in rows if r.get("error") is None), questions_in=len(by_q))
    labeled = [r for r in rows if r.get("error") is None and r.get("correct") is not None]
    if labeled:
        stats.teacher_accuracy = round(sum(bool(r["correct"]) for r in labeled) / len(labeled), 4)

    first_k = spec.per_example if spec.select == "first" else None
    groups: dict[str, list[dict[str, Any]]] = {}
    kept_by_q: dict[str, list[dict[str, Any]]] = {}
    for qid, group in by_q.items():
        group = sorted(group, key=lambda r: (r.get("sample_index") is None, r.get("sample_index") or 0))
        groups[qid] = group
        kept: list[dict[str, Any]] = []
        for r in group:
            if r.get("error") is not None:
                drops[DROP_REQUEST_ERROR] += 1
                continue
            if first_k is not None and r["sample_index"] >= first_k:
                drops[DROP_PER_EXAMPLE] += 1
                continue
            if r.get("pred_label") is None:
                drops[DROP_UNPARSEABLE] += 1
                continue
            if spec.mode != "all":
                if r.get("gold") is None:
                    drops[DROP_NO_GOLD] += 1
                    continue
                if not r.get("correct"):
                    drops[DROP_WRONG] += 1
                    continue
            kept.append(r)
        kept_by_q[qid] = _dedup(kept, spec, drops)
    if spec.select != "first" and spec.per_example is not None:
        chains = {q: [r["rationale"] or "" for r in g if r.get("error") is None] for q, g in groups.items()}
        chosen = choose(kept_by_q, Subsample(spec.select, spec.per_example, spec.seed, spec.embedder), chains)
        drops[DROP_SUBSAMPLE] += sum(len(kept_by_q[q]) - len(chosen[q]) for q in kept_by_q)
        kept_by_q = chosen
        stats.selection = {"strategy": spec.select, "k": spec.per_example, "seed": spec.seed}
        if spec.select == "diverse":
            stats.selection["embedder"] = spec.embedder
    out: list[dict[str, Any]] = []
    for qid, kept in kept_by_q.items():
        out.extend(_variant(qid, groups[qid], kept, spec, drops))
    _selected_stats(stats, kept_by_q)

    stats.kept = len(out)
    stats.questions_kept = len({r["example_id"] for r in out})
    stats.dropped = dict(sorted(drops.items()))
    if spec.variant == "cot" and out:
        per_q: dict[str, set[str]] = defaultdict(set)
        for r in out:
            per_q[r["example_id"]].add(_norm(r["rationale"]))
        stats.unique_rationales_per_question = round(sum(len(v) for v in per_q.values()) / len(per_q), 3)
        stats.distinct_2 = round(distinct_n(r["rationale"] for r in out), 4)
    return out, stats


def question_subset(ids: list[str], fraction: float, seed: int = 0) -> set[str]:
    """``fraction`` of the question ids by a seeded hash order: a smaller fraction's subset is
    inside every larger one's (the paper's data-scaling curve grows one set of questions)."""
    ranked = sorted(ids, key=lambda q: hashlib.sha256(f"scotd-questions-{seed}:{q}".encode()).hexdigest())
    return set(ranked[: max(1, round(fraction * len(ranked)))]) if ranked else set()


def _selected_stats(stats: CorpusStats, kept_by_q: dict[str, list[dict[str, Any]]]) -> None:
    """Chains kept per question (over questions that kept any) and their mean teacher log-prob."""
    counts = [len(v) for v in kept_by_q.values() if v]
    if counts:
        stats.kept_per_question = {
            "mean": round(sum(counts) / len(counts), 3),
            "min": min(counts),
            "max": max(counts),
        }
    lps = [r["mean_logprob"] for v in kept_by_q.values() for r in v if r.get("mean_logprob") is not None]
    stats.mean_logprob = round(sum(lps) / len(lps), 4) if lps else None


def _dedup(kept: list[dict[str, Any]], spec: CorpusSpec, drops: Counter[str]) -> list[dict[str, Any]]:
    if spec.dedup == "none":
        return kept
    result: list[dict[str, Any]] = []
    seen_exact: set[str] = set()
    seen_shingles: list[set[tuple[str, ...]]] = []
    for r in kept:
        key = _exact_key(r["rationale"] or "") + " => " + str(r["pred_label"])
        if key in seen_exact:
            drops[DROP_DUP_EXACT] += 1
            continue
        if spec.dedup == "near":
            sh = _shingles(r["rationale"] or "")
            if any(jaccard(sh, prev) >= spec.near_threshold for prev in seen_shingles):
                drops[DROP_DUP_NEAR] += 1
                continue
            seen_shingles.append(sh)
        seen_exact.add(key)
        result.append(r)
    return result


def _training_row(r: dict[str, Any], rationale: str, label: str) -> dict[str, Any]:
    return {**{k: r.get(k) for k in TRAINING_COLUMNS[:-2]}, "rationale": rationale, "label": label}


def _variant(
    qid: str, group: list[dict[str, Any]], kept: list[dict[str, Any]], spec: CorpusSpec, drops: Counter[str]
) -> list[dict[str, Any]]:
    if spec.variant == "cot":
        return [
            _training_row(r, r["rationale"], r["gold"] if spec.mode != "all" else r["pred_label"])
            for r in kept
        ]
    if not kept:
        return []
    drops[DROP_VARIANT] += len(kept) - 1
    if spec.variant == "greedy":
        first = kept[0]
        return [
            _training_row(
                first, first["rationale"], first["gold"] if spec.mode != "all" else first["pred_label"]
            )
        ]
    # label-only: gold when supervised, else the teacher's majority label over its samples.
    parsed = [r.get("pred_label") for r in group if r.get("error") is None]
    label = kept[0]["gold"] if spec.mode != "all" else vote(parsed).label
    return [_training_row(kept[0], "", label)] if label is not None else []


def balanced_epoch(rows: list[dict[str, Any]], epoch: int, seed: int) -> list[dict[str, Any]]:
    """One rationale per question for ``epoch``: a seeded draw, different every epoch."""
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_q[r["example_id"]].append(r)
    rng = random.Random(f"{seed}-{epoch}")
    return [rng.choice(by_q[q]) for q in sorted(by_q)]
