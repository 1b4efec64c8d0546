"""Recorded PaLM-540B chains of thought for CSQA, keyed by the whitespace-collapsed question stem.

Source (``<data dir>/distilling_step_by_step_cqa``): ``cqa_train.json`` / ``cqa_test.json`` are
JSON Lines (despite the name) aligned row by row with ``llm/train_CoT_{0..9}.json`` /
``llm/test_CoT_{0,1}.json`` (JSON lists of strings, read in numeric order). Chains keep their
recorded run-on continuations (``"\\n\\nQ: ..."``): the request's ``stop`` cuts them, as a
provider's would. There is ONE recorded chain per question, so every one of a request's ``n``
samples is that chain (a replayed teacher has no sampling diversity).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from scotd.teacher.sim.prompt_reader import normalise_stem

log = logging.getLogger(__name__)

FOLDER = "distilling_step_by_step_cqa"
SPLITS = ("train", "test")


class ReplayUnavailable(RuntimeError):
    """The recorded chains are missing or misaligned; the message says which file and what to do."""


def _numbered(folder: Path, split: str) -> list[Path]:
    paths = list(folder.glob(f"{split}_CoT_*.json"))
    return sorted(paths, key=lambda p: int(re.sub(r"\D", "", p.stem.rsplit("_", 1)[-1]) or 0))


class ReplayStore:
    """Lazily loaded ``stem -> recorded chain`` map; ``data_dir`` None means no data directory."""

    def __init__(self, data_dir: Path | None) -> None:
        self.folder = data_dir / FOLDER if data_dir is not None else None
        self._chains: dict[str, str] | None = None
        self._failed: str | None = None

    def check(self) -> None:
        """Raise ``ReplayUnavailable`` unless every file needed is present (cheap, no parsing)."""
        if self.folder is None:
            raise ReplayUnavailable(
                "replay needs the shared data directory; pass --data-dir or set $SCOTD_DATA_DIR "
                f"to a directory holding {FOLDER}/"
            )
        for split in SPLITS:
            if not (self.folder / f"cqa_{split}.json").is_file() or not _numbered(self.folder / "llm", split):
                raise ReplayUnavailable(
                    f"replay needs {self.folder}/cqa_{split}.json and {self.folder}/llm/{split}_CoT_*.json"
                )

    def _load(self) -> dict[str, str]:
        self.check()
        assert self.folder is not None
        chains: dict[str, str] = {}
        for split in SPLITS:
            with open(self.folder / f"cqa_{split}.json", encoding="utf-8") as f:
                stems = [normalise_stem(json.loads(line)["question"]) for line in f if line.strip()]
            recorded: list[str] = []
            for path in _numbered(self.folder / "llm", split):
                recorded.extend(json.loads(path.read_text("utf-8")))
            if len(stems) != len(recorded):
                raise ReplayUnavailable(
                    f"{self.folder}: {len(stems)} {split} questions but {len(recorded)} recorded chains"
                )
            for stem, chain in zip(stems, recorded, strict=True):
                chains.setdefault(stem, chain)
        log.info("replay: loaded %d recorded chains from %s", len(chains), self.folder)
        return chains

    def lookup(self, stem: str) -> str | None:
        """The recorded chain for ``stem``, or ``None`` (also when the data is unavailable)."""
        if self._chains is None:
            if self._failed is not None:
                return None
            try:
                # Loading blocks the event loop once (~0.3 s); every later lookup is a dict get.
                self._chains = self._load()
            except (ReplayUnavailable, OSError, ValueError, KeyError) as e:
                self._failed = str(e)
                log.warning("replay unavailable, recorded questions get the fallback chain: %s", e)
                return None
        return self._chains.get(normalise_stem(stem))
