"""Adaptive self-consistency across every student of the committed experiment grids: at each
confidence level, the share of the vote budget spent and the accuracy lost against maj@K, and how
many students stay inside maj@K's 95% interval. Reads results only; no model is run.

    python benchmarks/adaptive_votes.py [benchmarks/results/experiments]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def rows(root: Path) -> list[dict[str, Any]]:
    """One row per (student, confidence level) with an adaptive curve in its evaluation."""
    out = []
    for path in sorted(root.glob("*/results.json")):
        for key, student in json.loads(path.read_text())["students"].items():
            ev = student["eval"]
            adaptive, sampled = ev.get("adaptive"), ev.get("sampled") or {}
            if not adaptive:
                continue
            k = str(adaptive["max_votes"])
            maj = sampled["maj_at_k"][k]
            for point in adaptive["curve"]:
                out.append(
                    {
                        "student": f"{path.parent.name}/{key}",
                        "confidence": point["confidence"],
                        "votes_share": point["mean_votes"] / adaptive["max_votes"],
                        "loss_points": 100 * (maj["accuracy"] - point["accuracy"]),
                        "inside_ci": maj["ci95"][0] <= point["accuracy"] <= maj["ci95"][1],
                    }
                )
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).parent / "results" / "experiments")
    data = rows(root)
    if not data:
        print(f"no results.json with an adaptive curve under {root}")
        return 1
    students = {r["student"] for r in data}
    print(f"{len(students)} students under {root}")
    print(
        "| confidence | votes spent: median [min, max] | accuracy lost vs maj@K: median [max] | inside maj@K's 95% CI |"
    )
    print("|---|---|---|---|")
    for level in sorted({r["confidence"] for r in data}):
        at = [r for r in data if r["confidence"] == level]
        share = [100 * r["votes_share"] for r in at]
        loss = [r["loss_points"] for r in at]
        inside = sum(r["inside_ci"] for r in at)
        print(
            f"| {level} | {statistics.median(share):.0f}% [{min(share):.0f}, {max(share):.0f}] "
            f"| {statistics.median(loss):+.1f} [{max(loss):+.1f}] | {inside}/{len(at)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
