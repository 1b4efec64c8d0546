"""The Ray Data stage: a pool of engine actors turning prompt rows into generation rows."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from scotd import storage
from scotd.generation.engines import EngineName, build_engine

# Output columns, one row per generated sample.
GEN_COLUMNS = ("example_id", "mode", "sample_index", "text", "gen_tokens", "gen_s")


def sample_seed(base: int, example_id: str, mode: str) -> int:
    digest = hashlib.sha256(f"{base}:{example_id}:{mode}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class StudentGenerator:
    """Callable class for ``map_batches``: the engine is built once per actor in ``__init__``.

    Input columns ``example_id``, ``prompt``; per prompt it yields one greedy row (when asked) and
    ``votes`` sampled rows, all of them (nothing is dropped, unlike ``n`` in Ray's own vLLM stage).
    """

    def __init__(
        self,
        *,
        model_dir: str,
        engine: EngineName,
        greedy: bool,
        votes: int,
        temperature: float,
        max_new_tokens: int,
        batch_size: int,
        dtype: str,
        seed: int,
        threads: int | None,
    ) -> None:
        # An export on s3:// / gs:// (cluster nodes share no disk) is copied to this node once.
        self.engine = build_engine(
            engine,
            storage.local_dir(model_dir),
            batch_size=batch_size,
            dtype=dtype,
            seed=seed,
            threads=threads,
        )
        self.greedy, self.votes, self.temperature = greedy, votes, temperature
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        ids = [str(x) for x in batch["example_id"]]
        prompts = [str(x) for x in batch["prompt"]]
        rows: list[tuple[Any, ...]] = []
        passes = ([("greedy", 1, 0.0)] if self.greedy else []) + (
            [("sampled", self.votes, self.temperature)] if self.votes else []
        )
        for mode, n, temperature in passes:
            start = time.perf_counter()
            seeds = [sample_seed(self.seed, i, mode) for i in ids]
            gens = self.engine.generate(prompts, n, temperature, self.max_new_tokens, seeds)
            per_prompt_s = (time.perf_counter() - start) / max(1, len(prompts))
            for ex_id, outs in zip(ids, gens, strict=True):
                rows.extend(
                    (ex_id, mode, j, g.text, g.tokens, per_prompt_s / max(1, n)) for j, g in enumerate(outs)
                )
        return {col: [r[i] for r in rows] for i, col in enumerate(GEN_COLUMNS)}
