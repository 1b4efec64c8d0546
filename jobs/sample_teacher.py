"""Teacher sampling as a Ray job.

    ray job submit --working-dir . -- python jobs/sample_teacher.py --config jobs/configs/<name>.yaml

Flags are ``scotd sample``'s (the same typed ``SampleConfig``); this file only makes the stage
importable and runnable as a script, so the job and the CLI cannot drift apart.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from scotd.cli import main as scotd_main


def main(argv: Sequence[str] | None = None) -> int:
    return scotd_main(["sample", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
