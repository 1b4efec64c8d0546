"""The distill stage's driver: ``DistillConfig`` -> Ray Data -> Ray Train ``TorchTrainer`` -> HF export.

A ``TrainingSet`` in, a ``StudentRun`` out (``scotd.artifacts``), in ``<out>/<run name>/`` (a local path or an object-store URI; the run name is derived from
what is trained, so re-running the same command finds the same directory and resumes)::

    config.yaml                 the resolved config
    student_init/               --student tiny: the initial model + locally trained tokenizer
    validation_questions.json   question ids held out for the validation loss
    checkpoint_<time>/          Ray Train checkpoints (DCP shards, trainer state, RNG), last K kept
    metrics.jsonl               rank 0's metrics (train/val loss, tokens/s, step time, MFU on GPU)
    export/                     the final student in Hugging Face format
    summary.json                what happened (written when the run finishes)

Failing fast, before any cluster time: a missing corpus, an unloadable student (a hub id offline),
an invalid config. A run that finished already (same fingerprint, export complete) returns at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import tempfile
import time
from dataclasses import asdict
from typing import Any

from scotd import storage
from scotd.artifacts import DistillSummary, StudentRun, TrainingSet
from scotd.config import write_resolved
from scotd.distill.checkpoint import TRAINER_STATE
from scotd.distill.config import DistillConfig, run_fingerprint, run_name
from scotd.distill.dataset import corpus_texts, prepare, read_training_set
from scotd.distill.export import export_done
from scotd.outlock import output_lock
from scotd.student.factory import StudentSource, resolve_student
from scotd.student.tiny import build_tiny_student

log = logging.getLogger(__name__)


def _tiny_student(cfg: DistillConfig, run: storage.Location, training: TrainingSet, ds: Any) -> StudentSource:
    """Build the tiny student once per run (a resumed run must reuse the same tokenizer)."""
    init = run.child(StudentRun.STUDENT_INIT)
    if not storage.exists(init, StudentRun.INIT_COMPLETE):
        texts = corpus_texts(ds, cfg.label_only)
        with tempfile.TemporaryDirectory(prefix="scotd-tiny-") as tmp:
            build_tiny_student(texts, tmp, cfg.tiny, seed=cfg.seed)
            storage.upload_dir(tmp, init)
        storage.write_bytes(init, StudentRun.INIT_COMPLETE, training.uri.encode())
        log.info("built the tiny student (%s tokenizer) in %s", cfg.tiny.tokenizer, init.uri)
    # file:// URIs are local too: from_pretrained wants the plain path.
    return (
        StudentSource("tiny", "local", init.path) if init.is_local else StudentSource("tiny", "uri", init.uri)
    )


def _summarise(rows: list[dict[str, Any]], since: float) -> dict[str, Any]:
    steps = [r for r in rows if "event" not in r and "loss" in r]
    vals = [r for r in rows if "event" not in r and "val_loss" in r]
    resumes = [r for r in rows if r.get("event") == "resume" and r["time"] >= since]
    recent = [r for r in steps if r["time"] >= since]

    def med(key: str) -> float | None:
        xs = [r[key] for r in recent if r.get(key) is not None]
        return round(statistics.median(xs), 4) if xs else None

    return {
        "final_step": steps[-1]["step"] if steps else 0,
        "train_loss_first": steps[0]["loss"] if steps else None,
        "train_loss_last": steps[-1]["loss"] if steps else None,
        "val_loss_first": vals[0]["val_loss"] if vals else None,
        "val_loss_last": vals[-1]["val_loss"] if vals else None,
        "tokens_per_s_median": med("tokens_per_s"),
        "steps_per_s_median": med("steps_per_s"),
        "step_time_s_median": med("step_time_s"),
        "mfu_median": med("mfu"),
        "resumed_at_steps": [r["step"] for r in resumes],
    }


def student_run(cfg: DistillConfig, training: TrainingSet) -> StudentRun:
    """Where ``cfg`` trains on ``training``: the run directory is named by what it trains."""
    return StudentRun(storage.location(cfg.out).child(run_name(cfg, training.uri, training.digest)).uri)


def run_distill(cfg: DistillConfig) -> StudentRun:
    """Train (or resume, or find finished) the run that ``cfg`` describes. See the module docstring.

    Raises ``FileNotFoundError`` (no corpus), ``scotd.student.factory.StudentUnavailable``,
    ``ValueError`` (empty corpus, no training rows), ``RuntimeError`` (training failed after
    ``max_failures`` restarts).
    """
    training = TrainingSet.locate(cfg.corpus)
    if training.rows == 0:
        raise ValueError(f"the corpus {training.file} has no rows")
    source = resolve_student(cfg.student)  # an unavailable student fails before anything is written
    target = student_run(cfg, training)
    with output_lock(target.uri, f"scotd distill {storage.location(target.uri).name}"):
        return _run_distill(cfg, training, target, source)


def _run_distill(
    cfg: DistillConfig, info: TrainingSet, target: StudentRun, source: StudentSource
) -> StudentRun:
    started = time.time()
    fingerprint = run_fingerprint(cfg, info.uri, info.digest)
    root = storage.location(cfg.out)
    name = run_name(cfg, info.uri, info.digest)
    run = root.child(name)
    previous = target.read_summary()
    if previous and previous.fingerprint == fingerprint and export_done(run, cfg.max_steps):
        log.info("run %s finished already (step %s); nothing to train", name, previous.final_step)
        return StudentRun(run.uri, dataclasses.replace(previous, trained_steps_this_run=0))
    write_resolved(cfg, run.uri)
    had_checkpoint = bool(storage.list_files(run, suffix=TRAINER_STATE))

    from scotd.ray_runtime import init_ray, require_resources

    init_ray()
    require_resources(cfg.resources_per_worker, "resources_per_worker")
    ds = read_training_set(info, cfg.label_only)
    if source.kind == "tiny":
        source = _tiny_student(cfg, run, info, ds)
    data = prepare(
        ds,
        student=source,
        student_path=None,
        max_length=cfg.max_length,
        append_eos=cfg.append_eos,
        label_only=cfg.label_only,
        val_fraction=cfg.val_fraction,
        val_max_questions=cfg.val_max_questions,
        seed=cfg.seed,
        answer_first=cfg.target_order == "answer-first",
    )
    if not data.stats.rows.get("train"):
        raise ValueError(f"no training rows left in {info.file} (encode status: {data.stats.status})")
    dropped = sum(c.get("target_too_long", 0) for c in data.stats.status.values())
    if dropped:
        log.warning(
            "%d rows dropped: target longer than max_length=%d (see summary.json)", dropped, cfg.max_length
        )
    storage.write_bytes(run, StudentRun.VALIDATION, json.dumps(data.validation_ids).encode())

    result = _fit(
        cfg,
        run,
        root,
        name,
        source,
        data,
        fingerprint,
        balanced=info.mode == "balanced" and not cfg.label_only,
    )
    rows = target.metric_rows()
    summary: dict[str, Any] = {
        "status": "finished",
        "run_name": name,
        "fingerprint": fingerprint,
        "corpus": info.ref(),
        "student": cfg.student,
        "label_only": cfg.label_only,
        "num_workers": cfg.num_workers,
        "strategy": cfg.strategy,
        "data": asdict(data.stats),
        **_summarise(rows, started),
        "export": target.export_uri,
        "checkpoint": result.checkpoint.path if result.checkpoint is not None else None,
        "wall_s": round(time.time() - started, 1),
    }
    resumes = summary["resumed_at_steps"]
    summary["started_from_checkpoint"] = had_checkpoint
    summary["restarts_after_failure"] = max(0, len(resumes) - (1 if had_checkpoint else 0))
    first_step = resumes[0] if had_checkpoint and resumes else 0
    summary["trained_steps_this_run"] = summary["final_step"] - first_step
    return target.write_summary(DistillSummary(**summary))


def _fit(
    cfg: DistillConfig,
    run: storage.Location,
    root: storage.Location,
    name: str,
    source: StudentSource,
    data: Any,
    fingerprint: str,
    balanced: bool,
) -> Any:
    import ray.train
    from ray.train.torch import TorchTrainer

    from scotd.distill.loop import train_loop_per_worker

    resources: dict[str, float] = {**cfg.resources_per_worker, "CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1.0
    datasets = {"train": data.train}
    if data.validation is not None:
        datasets["validation"] = data.validation
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.model_dump(mode="json"),
            "run_uri": run.uri,
            "student": asdict(source),
            "balanced": balanced,
            "fingerprint": fingerprint,
            "has_validation": data.validation is not None,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=root.uri,
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
        datasets=datasets,
        # Train rows go whole to every worker (each takes its slice of a seeded global order, so
        # resume and worker count never change the data); validation is split across workers.
        dataset_config=ray.train.DataConfig(datasets_to_split=["validation"]),
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise RuntimeError(
            f"training failed (max_failures={cfg.max_failures}); re-run the same command to resume "
            f"from the last checkpoint in {run.uri}: {e}"
        ) from e
