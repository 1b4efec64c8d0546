"""``scotd <stage>``: a thin dispatcher. Each stage module exposes ``add_arguments`` and ``run``.

Stage modules are imported lazily so ``scotd --help`` and ``scotd data`` stay fast and never
import Ray, torch or vLLM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from scotd import __version__

# stage name -> (module, one-line help). Order is the order of the method.
STAGES: dict[str, tuple[str, str]] = {
    "data": ("scotd.tasks.cli", "inspect tasks: show examples and prompts, count rows per split"),
    "teacher-sim": ("scotd.teacher.sim.cli", "run the embedded OpenAI-compatible teacher server"),
    "sample": (
        "scotd.sample.cli",
        "buy N chains of thought per question from a teacher (Ray Data, resumable)",
    ),
    "corpus": (
        "scotd.corpus.cli",
        "filter sampled chains into a training set (all | correct | balanced, dedup, N)",
    ),
    "distill": (
        "scotd.distill.cli",
        "train a student on a corpus: Ray Train, FSDP2/DDP, resumable, HF export",
    ),
    "eval": (
        "scotd.eval.cli",
        "sample K rationales per question from a model, vote, report (vLLM or HF)",
    ),
    "serve": (
        "scotd.serve.cli",
        "serve the voting student on Ray Serve (/v1/answer + OpenAI-compatible API)",
    ),
    "pipeline": (
        "scotd.pipeline.cli",
        "the whole method in one command (embedded teacher + synthetic task by default)",
    ),
    "experiment": (
        "scotd.pipeline.experiment_cli",
        "a grid of students from one teacher ledger: N curve, data scaling, down-sampling, ...",
    ),
    "cluster-local": (
        "scotd.localcluster.cli",
        "a local autoscaling Ray cluster with cluster/aws.yaml's node types (try the cluster path here)",
    ),
    "status": (
        "scotd.status.cli",
        "where a run stands: stage, progress, spend, ETA, last error, whether it is live",
    ),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only the ``chosen`` stage's module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="scotd",
        description="Symbolic Chain-of-Thought Distillation on Ray: sample a teacher's chains of thought, "
        "distill a small student, evaluate and serve it with self-consistency voting.",
    )
    parser.add_argument("--version", action="version", version=f"scotd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        stage_parser.set_defaults(_module=module)
        if chosen == name:
            importlib.import_module(module).add_arguments(stage_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if a in STAGES), None)
    args = build_parser(chosen).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
