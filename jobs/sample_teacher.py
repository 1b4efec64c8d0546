"""Teacher sampling as a Ray job.

    ray job submit --working-dir . -- python jobs/sample_teacher.py --config jobs/configs/<name>.yaml

Flags are ``scotd sample``'s (the same typed ``SampleConfig``); this file only makes the stage
importable and runnable as a script, so the job and the CLI cannot drift apart.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# Run as `python jobs/<x>.py` (e.g. `ray job submit --working-dir . -- ...`): import scotd from this
# checkout, so the job works on a cluster where it is not pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scotd.cli import main as scotd_main


def main(argv: Sequence[str] | None = None) -> int:
    return scotd_main(["sample", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
