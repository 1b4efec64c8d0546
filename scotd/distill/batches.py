"""Which rows each worker trains on at each step: a deterministic, resumable stream (pure; no Ray).

Every worker holds the same tokenised training rows in the same canonical order (sorted by
``row_key``). From them, ``EpochPlan`` defines one global order per epoch:

- ``balanced`` corpora: ONE rationale per question per epoch, drawn with
  ``scotd.selection.balanced_epoch(rows, epoch, seed)`` (the paper's supervised setting), then shuffled;
- other corpora (``all``, ``correct``, label-only): every row once per epoch, shuffled.

Optional length grouping (``group_batches = G > 0``, like Hugging Face's ``group_by_length``):
the stream is cut into windows of ``G`` steps; each window's ``G * B`` samples are sorted by
length, cut into ``G`` batches and those are shuffled (seeded by the window). Batches then hold
similar lengths, so dynamic padding wastes less; windows align with steps, so resuming still
reproduces every batch.

Epochs are concatenated into one stream; global step ``s`` takes samples ``[s*B, (s+1)*B)`` of it
and rank ``r`` of ``W`` takes the contiguous ``B/W`` slice ``r`` of those. Hence the samples of a
step depend only on ``(seed, step, B)`` — not on the number of workers, the strategy, or restarts —
so a resumed run sees exactly the batches it would have seen, and runs on 1 and 2 workers see the
same data. The stream position (``samples_seen``) is part of every checkpoint.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from scotd.selection import balanced_epoch


@dataclass(frozen=True)
class DataPosition:
    """Where the stream is: samples consumed so far, and the epoch / offset that means."""

    samples_seen: int
    epoch: int
    offset: int


class EpochPlan:
    """Deterministic per-epoch orders over ``len(example_ids)`` rows (indices into the canonical rows)."""

    def __init__(
        self,
        example_ids: Sequence[str],
        balanced: bool,
        seed: int,
        *,
        lengths: Sequence[int] | None = None,
        group_batches: int = 0,
        batch_size: int,
    ) -> None:
        if not example_ids:
            raise ValueError("no training rows")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if group_batches and (lengths is None or len(lengths) != len(example_ids)):
            raise ValueError("length grouping needs one length per row")
        self._ids = list(example_ids)
        self._balanced = balanced
        self._seed = seed
        self._lengths = list(lengths) if lengths is not None else []
        self._group = group_batches
        self._batch = batch_size
        self._cache: dict[int, list[int]] = {}
        self._window: tuple[int, list[list[int]]] = (-1, [])
        self.epoch_size = len(set(self._ids)) if balanced else len(self._ids)

    def order(self, epoch: int) -> list[int]:
        """Row indices of ``epoch`` in training order (length ``epoch_size``)."""
        if epoch not in self._cache:
            if self._balanced:
                rows = [{"example_id": q, "index": i} for i, q in enumerate(self._ids)]
                chosen = [int(r["index"]) for r in balanced_epoch(rows, epoch, self._seed)]
            else:
                chosen = list(range(len(self._ids)))
            random.Random(f"scotd-order-{self._seed}-{epoch}").shuffle(chosen)
            # Training moves forward: only the current and the next epoch are needed again.
            self._cache = {e: o for e, o in self._cache.items() if e == epoch - 1}
            self._cache[epoch] = chosen
        return self._cache[epoch]

    def position(self, samples_seen: int) -> DataPosition:
        epoch, offset = divmod(samples_seen, self.epoch_size)
        return DataPosition(samples_seen, epoch, offset)

    def batch(self, samples_seen: int) -> list[int]:
        """The global batch of the step that starts after ``samples_seen`` samples (a multiple of B)."""
        if samples_seen % self._batch:
            raise ValueError(f"samples_seen {samples_seen} is not a multiple of the batch size {self._batch}")
        step = samples_seen // self._batch
        if not self._group:
            return self.take(samples_seen, self._batch)
        window, index = divmod(step, self._group)
        if self._window[0] != window:
            rows = self.take(window * self._group * self._batch, self._group * self._batch)
            rows.sort(key=lambda i: -self._lengths[i])
            batches = [rows[j : j + self._batch] for j in range(0, len(rows), self._batch)]
            random.Random(f"scotd-group-{self._seed}-{window}").shuffle(batches)
            self._window = (window, batches)
        return list(self._window[1][index])

    def take(self, samples_seen: int, count: int) -> list[int]:
        """The ``count`` row indices after ``samples_seen`` samples of the stream (may span epochs)."""
        out: list[int] = []
        pos = samples_seen
        while len(out) < count:
            epoch, offset = divmod(pos, self.epoch_size)
            chunk = self.order(epoch)[offset : offset + count - len(out)]
            out.extend(chunk)
            pos += len(chunk)
        return out


def rank_slice(global_rows: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of a global batch; requires ``len % world_size == 0``."""
    if len(global_rows) % world_size:
        raise ValueError(f"global batch {len(global_rows)} is not divisible by {world_size} workers")
    share = len(global_rows) // world_size
    return list(global_rows[rank * share : (rank + 1) * share])


def micro_batches(rows: Sequence[int], micro_batch_size: int) -> list[list[int]]:
    """Split one rank's rows into gradient-accumulation micro-batches (the last may be smaller)."""
    return [list(rows[i : i + micro_batch_size]) for i in range(0, len(rows), micro_batch_size)]
