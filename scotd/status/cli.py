"""``scotd status PATH_OR_URI``: where a run stands (stage, progress, spend, ETA, last error, live?).

Reads the directory only (a path or an object-storage URI): no Ray, no process to ask, safe to run
in a loop beside a live run. Exit codes: 0 the directory was read (whatever its state), 2 nothing
is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH_OR_URI",
        help="a run's output directory: sample, corpus, distill run, eval, pipeline",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    import time

    from scotd.status.read import read_status
    from scotd.status.render import render

    now = time.time()
    status = read_status(args.path, now=now)
    if args.json:
        print(json.dumps(dataclasses.asdict(status), indent=2, default=str))
    else:
        print(render(status, now))
    if status.state == "missing":
        print(f"error: no such directory: {status.path}", file=sys.stderr)
        return 2
    return 0
