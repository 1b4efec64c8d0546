"""``scotd data show|stats``: look at a task before spending anything on it."""

from __future__ import annotations

import argparse
import json
import sys

from scotd import paths, prompts
from scotd.tasks import (
    SPLITS,
    TASK_SPECS,
    DataUnavailable,
    LoadResult,
    UnknownTask,
    load_task,
    task_names,
)
from scotd.tasks.fetch import fetch_task
from scotd.tasks.hub import HubUnavailable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print examples (and the prompts built from them)")
    show.add_argument("task", help=f"one of: {', '.join(task_names())}")
    show.add_argument("--split", default="train", choices=SPLITS)
    show.add_argument("--limit", type=int, default=3)
    show.add_argument(
        "--prompt",
        choices=("none", "student", "teacher"),
        default="student",
        help="also print the student input or the full few-shot teacher prompt",
    )
    show.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    stats = sub.add_parser("stats", help="rows per split and rejected rows by reason")
    stats.add_argument("task", help=f"one of: {', '.join(task_names())}")
    stats.add_argument("--errors", type=int, default=5, help="print the first N rejected rows per split")
    for p in (show, stats):
        p.add_argument(
            "--data-dir",
            help="directory with the task folders (default: $SCOTD_DATA_DIR, else ../shared/data "
            "beside the checkout, else the user data directory `scotd data fetch` fills)",
        )
        p.add_argument("--seed", type=int, default=0, help="seed of the synthetic task")
    fetch = sub.add_parser(
        "fetch",
        help="download a paper task from the Hugging Face hub (needs internet)",
        description="Download every split of a paper task from the Hugging Face hub and write it in "
        "the official JSONL layout the loaders read. Splits already on disk are kept (--force "
        "downloads them again). Offline it fails within seconds and writes nothing.",
    )
    fetch.add_argument("task", choices=sorted(set(TASK_SPECS) - {"synthetic"}))
    fetch.add_argument(
        "--data-dir", help=f"where to write (default: $SCOTD_DATA_DIR, else {paths.user_data_dir()})"
    )
    fetch.add_argument("--force", action="store_true", help="download splits that are already on disk")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "show":
            return _show(args)
        if args.action == "fetch":
            return _fetch(args)
        return _stats(args)
    except (UnknownTask, DataUnavailable, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _show(args: argparse.Namespace) -> int:
    result = load_task(args.task, args.split, data_dir=args.data_dir, limit=args.limit, seed=args.seed)
    for ex in result.examples:
        if args.json:
            print(json.dumps(ex.to_row(), ensure_ascii=False))
            continue
        print(f"--- {ex.id} (gold: {ex.gold})")
        if args.prompt == "teacher":
            print(prompts.teacher_prompt(ex))
        else:
            print(prompts.student_prompt(ex) if args.prompt == "student" else prompts.question_block(ex))
        print()
    for err in result.rejected:
        print(f"rejected {err}", file=sys.stderr)
    return 0


def _stats(args: argparse.Namespace) -> int:
    print(f"task {args.task}")
    print(f"{'split':<11} {'rows':>7} {'rejected':>9}  by reason")
    for split in SPLITS:
        try:
            result: LoadResult = load_task(args.task, split, data_dir=args.data_dir, seed=args.seed)
        except DataUnavailable as e:
            print(f"{split:<11} {'-':>7} {'-':>9}  unavailable: {e}")
            continue
        reasons = ", ".join(f"{k}={v}" for k, v in result.rejected_by_reason().items()) or "-"
        labeled = sum(ex.gold is not None for ex in result.examples)
        note = "" if labeled == len(result.examples) else f" ({labeled} labeled)"
        print(f"{split:<11} {len(result.examples):>7} {len(result.rejected):>9}  {reasons}{note}")
        for err in result.rejected[: args.errors]:
            print(f"    {err}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    spec = TASK_SPECS[args.task]
    root = paths.fetch_target_dir(args.data_dir)
    try:
        fetched = fetch_task(spec, root, force=args.force)
    except HubUnavailable as e:
        print(
            f"error: cannot fetch {args.task}: the Hugging Face hub dataset {spec.hub_id!r} cannot be "
            f"loaded: {e}. Nothing was written. Run this where the hub is reachable, or copy the "
            f"official files ({', '.join(spec.files.values())}) into {root / spec.folder}/.",
            file=sys.stderr,
        )
        return 2
    for f in fetched:
        how = "kept (already there; --force to download again)" if f.kept else f"from hf://{spec.hub_id}"
        print(f"{f.split:<11} {f.rows:>7} rows  {f.path}  {how}")
        for err in f.rejected[:5]:
            print(f"    rejected {err}")
    if paths.resolve_data_dir() != root:
        print(
            f"note: the loaders read {paths.resolve_data_dir()} first; pass --data-dir {root} "
            f"or export {paths.DATA_DIR_ENV}={root}"
        )
    return 0
