"""Task registry: ``load_task(name, split)`` for csqa, openbookqa, quarel, synthetic and ``jsonl:PATH``.

Local files come first (``--data-dir`` > ``$SCOTD_DATA_DIR`` > ``../shared/data``); a split that is
not on disk falls back to the paper's Hugging Face hub id, and offline that fails fast with a
``DataUnavailable`` naming the missing file and the hub id.
"""

from __future__ import annotations

import os
from pathlib import Path

from scotd.paths import DATA_DIR_ENV, resolve_data_dir
from scotd.tasks import generic
from scotd.tasks import synthetic as synthetic
from scotd.tasks.hub import HubUnavailable, load_from_hub
from scotd.tasks.jsonl import read_jsonl
from scotd.tasks.official import CSQA, OPENBOOKQA, QUAREL, TaskSpec, normalise_mcq, normalise_quarel
from scotd.tasks.schema import Example, LoadResult, RowError

__all__ = [
    "SPLITS",
    "TASK_SPECS",
    "DataUnavailable",
    "Example",
    "LoadResult",
    "RowError",
    "UnknownTask",
    "load_task",
    "task_names",
    "task_spec",
]

SPLITS = ("train", "validation", "test")
TASK_SPECS: dict[str, TaskSpec] = {s.name: s for s in (CSQA, OPENBOOKQA, QUAREL, synthetic.SPEC)}


class UnknownTask(ValueError):
    """The task name is not registered."""


class DataUnavailable(RuntimeError):
    """A split is neither on disk nor reachable on the hub."""


def task_names() -> list[str]:
    return [*TASK_SPECS, "jsonl:PATH"]


def task_spec(name: str) -> TaskSpec:
    """The spec of a registered task; ``jsonl:PATH`` tasks share the generic spec."""
    if name.startswith("jsonl:"):
        return generic.SPEC
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; choose one of {', '.join(task_names())}") from None


def splits_of(name: str) -> tuple[str, ...]:
    """The splits task ``name`` has: train / validation / test, and the synthetic task's probes."""
    return (*SPLITS, *synthetic.EXTRA_SPLITS) if name == synthetic.SPEC.name else SPLITS


def check_split(split: str, name: str = "") -> None:
    if split not in splits_of(name):
        raise ValueError(
            f"unknown split {split!r} for {name or 'this task'}; choose one of {', '.join(splits_of(name))}"
        )


def load_task(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Load ``split`` of task ``name``: valid examples plus every rejected row with its reason.

    Raises ``UnknownTask``, ``ValueError`` (bad split) or ``DataUnavailable``.
    """
    check_split(split, name)
    if name.startswith("jsonl:"):
        return generic.load(name.removeprefix("jsonl:"), split, limit=limit)
    spec = task_spec(name)
    if spec is synthetic.SPEC:
        return LoadResult(
            examples=synthetic.generate(split, limit or synthetic.DEFAULT_SIZES[split], seed=seed)
        )
    root = resolve_data_dir(data_dir)
    path = root / spec.folder / spec.files[split] if root is not None else None
    if path is not None and path.is_file():
        if spec is QUAREL:
            return read_jsonl(path, lambda o: normalise_quarel(o, spec, split), limit=limit)
        return read_jsonl(path, lambda o: normalise_mcq(o, spec, split), limit=limit)
    try:
        return load_from_hub(spec, split, limit)
    except HubUnavailable as e:
        where = str(path) if path is not None else f"<data dir>/{spec.folder}/{spec.files[split]}"
        have = _local_splits(spec, root)
        raise DataUnavailable(
            f"{name} split {split!r} is not available: no file {where}"
            + (f" (local splits: {', '.join(have)})" if have else "")
            + f", and the Hugging Face hub dataset {spec.hub_id!r} cannot be loaded: {e}. "
            f"Put the official JSONL file there, point --data-dir or ${DATA_DIR_ENV} at a directory "
            f"holding {spec.folder}/{spec.files[split]}, or fetch it once where the hub is reachable "
            f"(`scotd data fetch {name}`)."
        ) from None


def _local_splits(spec: TaskSpec, root: Path | None) -> list[str]:
    if root is None:
        return []
    return [s for s, f in spec.files.items() if (root / spec.folder / f).is_file()]
