"""A grid of students (the `experiment` stage: N curve, data scaling, down-sampling, ...) as a Ray job.

    ray job submit --working-dir . -- python jobs/experiment.py --config jobs/configs/experiments/<name>.yaml

Flags are ``scotd experiment``'s (the same typed ``PipelineConfig``, with its ``students``); this file
only makes the stage runnable as a script on a cluster where scotd is not pip-installed.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # import scotd from this checkout

from scotd.cli import main as scotd_main


def main(argv: Sequence[str] | None = None) -> int:
    return scotd_main(["experiment", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
