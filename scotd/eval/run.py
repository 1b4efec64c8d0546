"""The evaluation driver: questions → prompts → Ray Data engine actors → parsed, voted, reported.

A student's export in, an ``Evaluation`` (``scotd.artifacts``) out under ``cfg.out_dir()``: every
sample (rationale, parsed label, correctness), the metrics, a report and the vote curve, and
``config.yaml``. ``recompute(dir)`` rebuilds the metrics from the predictions alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from scotd import metrics as scotd_metrics
from scotd import prompts, storage
from scotd.artifacts import CONFIG_FILE, EvalSummary, Evaluation
from scotd.config import write_resolved
from scotd.eval.config import EvalConfig
from scotd.eval.metrics import compute_metrics
from scotd.eval.report import report_markdown, vote_curve_png
from scotd.eval.stage import StudentGenerator
from scotd.generation.engines import resolve_engine
from scotd.outlock import output_lock
from scotd.parsing import is_correct, parse_choices, parse_label_only
from scotd.tasks import Example, load_task

log = logging.getLogger(__name__)


def _prompt(ex: Example, style: str) -> str:
    return prompts.teacher_prompt(ex) if style == "few-shot" else prompts.student_prompt(ex)


def prediction_rows(
    examples: list[Example], generations: list[dict[str, Any]], label_only: bool, model: str
) -> list[dict[str, Any]]:
    """Join generations to their questions and parse each with the shared parser."""
    by_id = {ex.id: ex for ex in examples}
    parse = parse_label_only if label_only else parse_choices
    rows = []
    for g in sorted(generations, key=lambda g: (g["example_id"], g["mode"], g["sample_index"])):
        ex = by_id[g["example_id"]]
        parsed = parse(g["text"], ex.choices)
        rows.append(
            {
                **ex.to_row(),
                "model": model,
                "mode": g["mode"],
                "sample_index": int(g["sample_index"]),
                "text": g["text"],
                "rationale": parsed.rationale,
                "pred_label": parsed.label,
                "parse_error": parsed.reason,
                "correct": is_correct(parsed, ex),
                "gen_tokens": int(g["gen_tokens"]),
            }
        )
    return rows


def run_eval(cfg: EvalConfig) -> Evaluation:
    with output_lock(storage.location(cfg.out_dir()).uri, f"scotd eval {cfg.name or cfg.model}"):
        return _run_eval(cfg)


def _run_eval(cfg: EvalConfig) -> Evaluation:
    from scotd.ray_runtime import batch_rows, init_ray, require_resources

    started = time.time()
    engine = resolve_engine(cfg.engine)
    loaded = load_task(cfg.task, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
    if not loaded.examples:
        raise ValueError(f"{cfg.task}/{cfg.split} has no valid examples")
    out = storage.location(cfg.out_dir())
    run = scotd_metrics.run_tag(out.uri)
    write_resolved(cfg, out.uri)
    init_ray()
    require_resources(cfg.resources_per_engine, "resources_per_engine")
    import ray.data

    items = [{"example_id": ex.id, "prompt": _prompt(ex, cfg.prompt_style)} for ex in loaded.examples]
    per_batch = max(1, cfg.batch_size // max(1, cfg.votes)) if engine == "hf" else cfg.batch_size
    ds = ray.data.from_items(
        items, override_num_blocks=max(1, min(len(items) // per_batch, cfg.num_engines * 4))
    )
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    gen_ds = ds.map_batches(
        StudentGenerator,
        fn_constructor_kwargs={
            "model_dir": storage.location(cfg.model).uri,
            "engine": engine,
            "greedy": cfg.greedy,
            "votes": cfg.votes,
            "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens,
            "batch_size": cfg.batch_size,
            "dtype": cfg.dtype,
            "seed": cfg.seed,
            "threads": cfg.threads,
        },
        batch_size=per_batch,
        compute=ray.data.ActorPoolStrategy(size=cfg.num_engines),
        num_cpus=cfg.num_cpus_per_engine,
        num_gpus=cfg.num_gpus_per_engine,
        resources=cfg.resources_per_engine or None,
        runtime_env={"env_vars": env},
        batch_format="numpy",
    )
    generations: list[dict[str, Any]] = []
    gen_s = 0.0
    per_question = (1 if cfg.greedy else 0) + cfg.votes
    with tqdm(total=len(items), unit="q", desc=f"eval {engine}", disable=not cfg.progress) as bar:
        for batch in gen_ds.iter_batches(batch_size=None, batch_format="numpy"):
            got = batch_rows(batch)
            generations.extend(got)
            gen_s += float(sum(batch["gen_s"]))
            bar.update(len(got) // max(1, per_question))
            scotd_metrics.inc("scotd_eval_questions_total", len(got) // max(1, per_question), run=run)
    rows = prediction_rows(loaded.examples, generations, cfg.label_only, cfg.display_name())
    scotd_metrics.inc("scotd_eval_samples_total", len(rows), run=run)
    scotd_metrics.inc("scotd_eval_unparseable_total", sum(r["pred_label"] is None for r in rows), run=run)
    storage.write_parquet(out, Evaluation.PREDICTIONS, pa.Table.from_pylist(rows))  # atomic
    metrics = compute_metrics(rows, cfg.ks, cfg.seed)
    wall = time.time() - started
    tokens = sum(r["gen_tokens"] for r in rows)
    summary = EvalSummary(
        model=cfg.model,
        name=cfg.display_name(),
        task=cfg.task,
        split=cfg.split,
        engine=engine,
        temperature=cfg.temperature,
        votes=cfg.votes,
        wall_s=round(wall, 2),
        generate_s=round(gen_s, 2),
        questions_per_s=round(len(loaded.examples) / max(gen_s, 1e-9), 3),
        generated_tokens=tokens,
        generated_tokens_per_s=round(tokens / max(gen_s, 1e-9), 1),
        input_rows_rejected=loaded.rejected_by_reason(),
    )
    return _write_outputs(Evaluation(out.uri), metrics, summary)


def _write_outputs(evaluation: Evaluation, metrics: dict[str, Any], summary: EvalSummary) -> Evaluation:
    out = evaluation.location
    done = evaluation.write_metrics(metrics, summary)
    storage.write_bytes(
        out, Evaluation.REPORT, report_markdown(summary.name, metrics, summary.to_dict()).encode()
    )
    title = f"{summary.name} on {summary.task}/{summary.split}"
    storage.write_bytes(out, Evaluation.VOTE_CURVE, vote_curve_png({summary.name: metrics}, title))
    return done


def recompute(out_dir: str) -> dict[str, Any]:
    """Metrics from ``predictions.parquet`` alone (no model, no Ray), with the run's ``ks`` and seed."""
    import yaml

    evaluation = Evaluation(storage.location(out_dir).uri)
    rows = evaluation.predictions()
    saved = storage.read_bytes(evaluation.location, CONFIG_FILE)
    cfg = EvalConfig.model_validate(yaml.safe_load(saved)) if saved else EvalConfig()
    return compute_metrics(rows, cfg.ks, cfg.seed)
