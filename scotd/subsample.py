"""Down-sampling a question's chains to K (paper §4): which chains a budget of K per question keeps.

Pure and deterministic by seed (no Ray, no network). Applied to each question's chains after the
corpus filters (the paper down-samples the correct-only corpus):

- ``random``      K chains, a seeded draw per question (the paper's null hypothesis);
- ``diverse``     embed the chains, cluster them hierarchically into K clusters, one seeded pick per
                  cluster. The embedder is ``tfidf`` (word 1-2-gram TF-IDF, offline, the default) or
                  ``sbert:MODEL`` (a sentence-transformers model found locally, e.g. the paper's S-BERT);
- ``likelihood``  the K chains with the highest mean token log-probability under the teacher;
- ``open-ended``  questions in quintiles by the unique bigrams across all their chains; the quintiles
                  keep 0.2/0.6/1/1.4/1.8 × K chains (1/3/5/7/9 for K = 5: the same total as K each).

``first`` is the N ablation instead: the first K *samples* of each question, before any filter
(``scotd.selection`` applies it); it needs nothing here.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Strategy = Literal["first", "random", "diverse", "likelihood", "open-ended"]
OPEN_ENDED_SHARES = (0.2, 0.6, 1.0, 1.4, 1.8)  # × K, least to most open-ended quintile
SBERT_PREFIX = "sbert:"


class SubsampleError(ValueError):
    """The corpus cannot be down-sampled this way (no log-probs, an embedder that is not here)."""


@dataclass(frozen=True)
class Subsample:
    strategy: Strategy
    k: int
    seed: int = 0
    embedder: str = "tfidf"


def unique_bigrams(texts: Sequence[str]) -> int:
    """Distinct word bigrams over ``texts`` (lower-cased words and punctuation marks)."""
    seen: set[tuple[str, str]] = set()
    for text in texts:
        words = re.findall(r"\w+|[^\w\s]", text.lower())
        seen.update(itertools.pairwise(words))
    return len(seen)


def open_ended_quotas(bigrams: Mapping[str, int], k: int) -> dict[str, int]:
    """Chains to keep per question: quintiles by unique bigrams (ties by id), ``OPEN_ENDED_SHARES`` × K."""
    order = sorted(bigrams, key=lambda q: (bigrams[q], q))
    n, quotas = len(order), {}
    for i, q in enumerate(order):
        quintile = min(4, i * 5 // n) if n else 0
        quotas[q] = max(1, round(OPEN_ENDED_SHARES[quintile] * k))
    return quotas


def _rng(seed: int, qid: str) -> random.Random:
    return random.Random(f"subsample-{seed}-{qid}")


def _embed(texts: list[str], embedder: str) -> Any:
    """One row per text (a dense numpy array); TF-IDF is fitted on ``texts``."""
    if embedder == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        return vectors.fit_transform(texts).toarray()
    if embedder.startswith(SBERT_PREFIX):
        name = embedder.removeprefix(SBERT_PREFIX)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise SubsampleError(
                f"embedder {embedder!r} needs sentence-transformers (pip install sentence-transformers); "
                "or use the offline default, tfidf"
            ) from None
        try:
            model = SentenceTransformer(name, local_files_only=True)
        except OSError as e:
            raise SubsampleError(
                f"sentence-transformers model {name!r} is not available locally ({e})"
            ) from None
        return model.encode(texts, normalize_embeddings=True)
    raise SubsampleError(f"unknown embedder {embedder!r}: use tfidf or sbert:MODEL")


def _clusters(vectors: Any, k: int) -> list[int]:
    """Average-linkage hierarchical clustering on cosine distance into ``k`` clusters."""
    from sklearn.cluster import AgglomerativeClustering

    if (vectors == 0).all(axis=1).any():  # an empty text: cosine is undefined, nudge it off zero
        vectors = vectors + 1e-9
    labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(vectors)
    return [int(x) for x in labels]


def choose(
    kept: Mapping[str, list[dict[str, Any]]],
    spec: Subsample,
    all_chains: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The chains each question keeps (in their sampling order).

    ``kept``: each question's chains after the filters. ``all_chains``: each question's rationales
    before them (what ``open-ended`` measures; defaults to ``kept``'s). Raises ``SubsampleError``.
    """
    if spec.strategy == "likelihood" and any(
        r.get("mean_logprob") is None for rs in kept.values() for r in rs
    ):
        raise SubsampleError(
            "likelihood selection needs the teacher's token log-probs, and this corpus has chains without "
            "them: sample with logprobs on (scotd sample --logprobs true) from an endpoint that returns them"
        )
    quotas = {q: spec.k for q in kept}
    if spec.strategy == "open-ended":
        texts = all_chains or {q: [r["rationale"] or "" for r in rs] for q, rs in kept.items()}
        quotas = open_ended_quotas({q: unique_bigrams(texts.get(q, [])) for q in kept}, spec.k)
    vectors: dict[str, Any] = {}
    if spec.strategy == "diverse":
        big = [q for q, rs in kept.items() if len(rs) > spec.k]
        flat = [r["rationale"] or "" for q in big for r in kept[q]]
        if flat:
            matrix, at = _embed(flat, spec.embedder), 0
            for q in big:
                vectors[q], at = matrix[at : at + len(kept[q])], at + len(kept[q])
    out: dict[str, list[dict[str, Any]]] = {}
    for q, rows in kept.items():
        quota = quotas[q]
        if len(rows) <= quota:
            out[q] = list(rows)
            continue
        rng = _rng(spec.seed, q)
        if spec.strategy == "likelihood":
            best = sorted(range(len(rows)), key=lambda i: (-rows[i]["mean_logprob"], i))[:quota]
        elif spec.strategy == "diverse":
            labels = _clusters(vectors[q], quota)
            best = [
                rng.choice([i for i, c in enumerate(labels) if c == cluster])
                for cluster in sorted(set(labels))
            ]
        else:  # random, open-ended
            best = rng.sample(range(len(rows)), quota)
        out[q] = [rows[i] for i in sorted(best)]
    return out
