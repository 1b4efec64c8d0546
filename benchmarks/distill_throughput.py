"""Steps/s and tokens/s of ``scotd distill`` with the tiny student on CPU: 1 vs 2 workers, FSDP2 vs DDP.

Each layout trains the synthetic preset (``jobs/configs/distill_synthetic.yaml``: batch 32, word
tokenizer) for ``--steps`` steps on the same demo corpus (``scotd.corpus.demo``), through
the real driver and Ray Train. Reported per layout: the median of the logged per-interval
``steps_per_s`` / ``tokens_per_s`` (the training loop only: no Ray start-up, data preparation or
export), and the wall time of the whole ``run_distill`` call. Layouts on a 2-core machine:

- ``1x2``: one worker with both cores (2 intra-op threads);
- ``2x1``: two workers (gloo) with one thread each.

    python benchmarks/distill_throughput.py                 # 4 layouts x 100 steps, ~6 min on 2 cores
    python benchmarks/distill_throughput.py --steps 40      # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scotd.config import load_config
from scotd.corpus.demo import write_demo_corpus
from scotd.distill.config import DistillConfig
from scotd.distill.run import run_distill
from scotd.ray_runtime import init_ray

PRESET = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "distill_synthetic.yaml"
LAYOUTS = {  # name: (workers, threads per worker)
    "1x2": (1, 2),
    "2x1": (2, 1),
}


def run_layout(
    corpus: Path, out: Path, workers: int, threads: int, strategy: str, steps: int
) -> dict[str, Any]:
    cfg = load_config(
        DistillConfig,
        PRESET,
        overrides={
            "corpus": str(corpus),
            "out": str(out),
            "num_workers": workers,
            "cpus_per_worker": 1,
            "torch_threads": threads,
            "strategy": strategy,
            "max_steps": steps,
            "log_every_steps": 10,
            "eval_every_steps": steps,
            "checkpoint_every_steps": steps,
            "val_fraction": 0.0,
        },
    )
    start = time.monotonic()
    s = run_distill(cfg).summary
    assert s is not None
    return {
        "layout": f"{workers}x{threads}",
        "strategy": strategy,
        "steps_per_s": s.steps_per_s_median,
        "tokens_per_s": s.tokens_per_s_median,
        "loss_first": round(s.train_loss_first or 0.0, 3),
        "loss_last": round(s.train_loss_last or 0.0, 3),
        "wall_s": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--questions", type=int, default=300)
    p.add_argument("--strategies", default="ddp,fsdp")
    p.add_argument("--layouts", default="1x2,2x1")
    args = p.parse_args(argv)
    init_ray()
    results = []
    with tempfile.TemporaryDirectory(prefix="scotd-bench-") as tmp:
        corpus = write_demo_corpus(Path(tmp) / "corpus", questions=args.questions, per_question=8)
        for layout in args.layouts.split(","):
            workers, threads = LAYOUTS[layout]
            for strategy in args.strategies.split(","):
                out = Path(tmp) / f"{layout}-{strategy}"
                results.append(run_layout(corpus, out, workers, threads, strategy, args.steps))
                print(json.dumps(results[-1]), flush=True)
    print(f"\nload average during the runs: {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{'layout':>7} {'strategy':>8} {'steps/s':>8} {'tokens/s':>9} {'loss':>13} {'wall s':>7}")
    for r in results:
        loss = f"{r['loss_first']}->{r['loss_last']}"
        print(
            f"{r['layout']:>7} {r['strategy']:>8} {r['steps_per_s']:>8} {r['tokens_per_s']:>9} {loss:>13} {r['wall_s']:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
