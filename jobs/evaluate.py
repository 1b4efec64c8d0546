"""Evaluation as a Ray job: ``ray job submit --working-dir . -- python jobs/evaluate.py --config ...``.

Flags are ``scotd eval``'s (the same typed ``EvalConfig``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from scotd.cli import main as scotd_main


def main(argv: Sequence[str] | None = None) -> int:
    return scotd_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
