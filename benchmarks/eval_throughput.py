"""Evaluation throughput: the vLLM engine against the transformers engine, same model, same questions.

    python benchmarks/eval_throughput.py [--questions 100] [--votes 10] [--model DIR] [--check-ray-vllm-stage]

Both engines run through ``scotd eval``'s Ray Data stage (what users run) on one engine actor.
Printed: generated tokens/s and questions/s (time inside the engine, per engine), wall time, and
the vLLM/HF ratio; ``--repeats`` runs each engine several times and reports the median.
Without ``--model`` a tiny random-init student is built locally (it generates up to
``--max-new-tokens`` every time, so the work per question is the same for both engines).

``--check-ray-vllm-stage`` also runs Ray Data's own vLLM processor (``ray.data.llm``) with
``n=K`` and counts the generations it returns per question — the reason scotd has its own stage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scotd import prompts
from scotd.config import load_config
from scotd.eval.config import EvalConfig
from scotd.eval.run import run_eval
from scotd.student.tiny import TinySpec, build_tiny_student
from scotd.tasks import load_task


def tiny_model(out: Path) -> Path:
    texts = [
        t
        for ex in load_task("synthetic", "train", limit=300).examples
        for t in (prompts.student_prompt(ex), "So the answer is: 7\n\n")
    ]
    return build_tiny_student(texts, out, TinySpec())


def run_engine(engine: str, model: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(
        EvalConfig,
        overrides={
            "model": str(model), "engine": engine, "task": "synthetic", "split": "test", "limit": args.questions,
            "votes": args.votes, "greedy": False, "temperature": 1.0, "max_new_tokens": args.max_new_tokens,
            "out": str(out), "progress": False, "batch_size": 256,
        },
    )  # fmt: skip
    start = time.perf_counter()
    result = run_eval(cfg)
    assert result.summary is not None
    return {**result.summary.to_dict(), "wall_incl_startup_s": round(time.perf_counter() - start, 1)}


def check_ray_vllm_stage(model: Path, k: int) -> dict[str, Any]:
    """Ray Data's vLLM processor with n=K: how many generations come back per question?"""
    import ray.data
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(
        model_source=str(model),
        engine_kwargs={"dtype": "float32", "enforce_eager": True, "max_model_len": 512},
        runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}},
        placement_group_config={"bundles": [{"CPU": 1}]},
        chat_template_stage=False,
        batch_size=8,
        concurrency=1,
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {
            "prompt": row["prompt"],
            "sampling_params": {"n": k, "temperature": 1.0, "max_tokens": 16},
        },
        postprocess=lambda row: {"id": row["id"], "generated_text": row["generated_text"]},
    )
    items = [
        {"id": ex.id, "prompt": prompts.student_prompt(ex)}
        for ex in load_task("synthetic", "test", limit=8).examples
    ]
    rows = processor(ray.data.from_items(items)).take_all()
    per_q: dict[str, int] = {}
    for r in rows:
        per_q[r["id"]] = per_q.get(r["id"], 0) + (
            len(r["generated_text"]) if isinstance(r["generated_text"], list) else 1
        )
    return {"asked_n": k, "questions": len(items), "generations_per_question": sorted(set(per_q.values()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--votes", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", help="HF model dir (default: a tiny random-init student)")
    parser.add_argument("--check-ray-vllm-stage", action="store_true")
    parser.add_argument("--out", default="outputs/benchmarks/eval_throughput.json")
    args = parser.parse_args(argv)
    from scotd.ray_runtime import init_ray

    init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp) / "tiny")
        results: dict[str, list[dict[str, Any]]] = {"hf": [], "vllm": []}
        for rep in range(args.repeats):
            for engine in ("hf", "vllm"):
                results[engine].append(run_engine(engine, model, Path(tmp) / f"{engine}-{rep}", args))
        report: dict[str, Any] = {
            "questions": args.questions,
            "votes": args.votes,
            "max_new_tokens": args.max_new_tokens,
        }
        print(
            f"{args.questions} questions x {args.votes} samples, up to {args.max_new_tokens} new tokens, {args.repeats} repeat(s)"
        )
        print(f"{'engine':<6} {'gen tok/s':>10} {'questions/s':>12} {'engine s':>9} {'wall s':>8}")
        for engine, runs in results.items():
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("generated_tokens_per_s", "questions_per_s", "generate_s", "wall_incl_startup_s")
            }
            report[engine] = med
            print(
                f"{engine:<6} {med['generated_tokens_per_s']:>10.0f} {med['questions_per_s']:>12.2f} {med['generate_s']:>9.1f} {med['wall_incl_startup_s']:>8.1f}"
            )
        ratio = report["vllm"]["generated_tokens_per_s"] / max(report["hf"]["generated_tokens_per_s"], 1e-9)
        report["vllm_over_hf_tokens_per_s"] = round(ratio, 2)
        print(f"vLLM / HF generated tokens/s: {ratio:.2f}x")
        if args.check_ray_vllm_stage:
            check = check_ray_vllm_stage(model, k=4)
            report["ray_data_vllm_stage"] = check
            print(
                f"ray.data.llm vLLM stage with n={check['asked_n']}: generations per question {check['generations_per_question']}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
