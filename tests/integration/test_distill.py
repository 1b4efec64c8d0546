"""`scotd distill` on the session's local Ray cluster: 2 CPU workers (gloo), the tiny student.

One FSDP2 run has a worker SIGKILLed mid-run; a DDP run of the same recipe (to an object-store
style ``file://`` URI) must then reproduce its loss curve step for step — which only holds if the
restarted group resumed model, optimiser, scheduler and data position exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scotd.artifacts import StudentRun
from scotd.config import load_config
from scotd.corpus.demo import write_demo_corpus
from scotd.distill.config import DistillConfig
from scotd.distill.run import run_distill

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

BASE: dict[str, Any] = {
    "student": "tiny",
    "tiny": {"tokenizer": "word"},
    "num_workers": 2,
    "cpus_per_worker": 0.5,
    "torch_threads": 1,
    "batch_size": 16,
    "max_steps": 24,
    "optimizer": "adamw",
    "lr": 2e-3,
    "adam_eps": 1e-8,
    "warmup_steps": 2,
    "schedule": "cosine",
    "grad_clip": 1.0,
    "max_length": 256,
    "checkpoint_every_steps": 8,
    "log_every_steps": 4,
    "eval_every_steps": 12,
    "val_fraction": 0.1,
}


def _cfg(corpus: Path, out: str, **over: Any) -> DistillConfig:
    return load_config(DistillConfig, overrides={**BASE, "corpus": str(corpus), "out": out, **over})


def _rows(run_dir: str) -> list[dict[str, Any]]:
    path = Path(run_dir.removeprefix("file://")) / StudentRun.METRICS
    return [json.loads(x) for x in path.read_text().splitlines()]


def _train_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _rows(run_dir) if "loss" in r}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_corpus(
        tmp_path_factory.mktemp("corpus") / "synthetic-train-balanced", questions=48, per_question=4
    )


@pytest.fixture(scope="module")
def fsdp_run(
    ray_session: str, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DistillConfig, StudentRun]:
    out = tmp_path_factory.mktemp("fsdp")
    cfg = _cfg(corpus, str(out), strategy="fsdp", fault={"kill_rank": 1, "kill_at_step": 13})
    return cfg, run_distill(cfg)


def test_fsdp_run_survives_a_killed_worker_and_learns(
    fsdp_run: tuple[DistillConfig, StudentRun], corpus: Path
) -> None:
    _, result = fsdp_run
    s = result.summary
    run = Path(result.uri)
    assert (run / "fault_injected.json").is_file()  # rank 1 really was SIGKILLed after step 13
    assert s.restarts_after_failure == 1 and s.resumed_at_steps == [8]
    assert s.final_step == 24 and s.trained_steps_this_run == 24
    steps = [r["step"] for r in _rows(result.uri) if "loss" in r]
    assert steps == [4, 8, 12, 16, 20, 24]  # the lost steps 9-13 were redone once, not logged twice
    state = json.loads(next(run.glob("checkpoint_*/trainer_state.json")).read_text())
    assert state["step"] in (16, 24) and state["samples_seen"] == state["step"] * 16
    assert s.train_loss_last < s.train_loss_first - 1.0, s
    assert s.val_loss_last < s.val_loss_first - 1.0, s
    # Split by question: every question is in exactly one of train / validation.
    corpus_questions = {r["example_id"] for r in pq.read_table(corpus / "train.parquet").to_pylist()}
    held_out = set(json.loads((run / "validation_questions.json").read_text()))
    assert held_out < corpus_questions and held_out
    assert s.data["questions"]["train"] + s.data["questions"]["validation"] == len(corpus_questions)
    assert s.data["status"]["train"] == {"ok": s.data["rows"]["train"]}


def test_ddp_to_a_uri_reproduces_the_interrupted_fsdp_run(
    fsdp_run: tuple[DistillConfig, StudentRun], corpus: Path, tmp_path: Path
) -> None:
    _, fsdp = fsdp_run
    result = run_distill(_cfg(corpus, f"file://{tmp_path}", strategy="ddp"))
    assert result.uri.startswith("file://") and result.summary.restarts_after_failure == 0
    assert Path(result.uri).name == Path(fsdp.uri).name  # same recipe, same run name
    ddp_losses, fsdp_losses = _train_losses(result.uri), _train_losses(fsdp.uri)
    assert ddp_losses.keys() == fsdp_losses.keys()
    for step, loss in fsdp_losses.items():
        assert ddp_losses[step] == pytest.approx(loss, rel=2e-4), (step, ddp_losses, fsdp_losses)
    assert (tmp_path / Path(result.uri).name / "export" / "model.safetensors").is_file()


def test_rerunning_a_finished_run_trains_nothing(fsdp_run: tuple[DistillConfig, StudentRun]) -> None:
    cfg, first = fsdp_run
    run = Path(first.uri)
    weights = run / "export" / "model.safetensors"
    before = (weights.stat().st_mtime_ns, [r for r in _rows(first.uri) if "loss" in r])
    start = time.monotonic()
    again = run_distill(cfg)  # the summary says finished: returns without starting Ray Train
    assert again.summary.trained_steps_this_run == 0 and time.monotonic() - start < 10
    (run / "summary.json").unlink()  # now the workers find the final checkpoint themselves
    again = run_distill(cfg)
    assert again.summary.trained_steps_this_run == 0 and again.summary.final_step == 24
    assert again.summary.started_from_checkpoint and again.summary.resumed_at_steps[-1] == 24
    assert (weights.stat().st_mtime_ns, [r for r in _rows(first.uri) if "loss" in r]) == before


def _prompts(corpus: Path) -> list[str]:
    from scotd.distill.collator import texts_for_row

    rows = pq.read_table(corpus / "train.parquet").to_pylist()
    return [texts_for_row(r)[0] for r in rows[:2]]


def _hf_greedy(export: Path, prompts: list[str], n: int) -> list[list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=n, do_sample=False, min_new_tokens=n)
        out.append(gen[0, ids["input_ids"].shape[1] :].tolist())
    return out


def test_export_loads_and_generates_with_transformers(
    fsdp_run: tuple[DistillConfig, StudentRun], corpus: Path
) -> None:
    from transformers import AutoConfig, AutoTokenizer

    export = Path(fsdp_run[1].export_uri)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "scotd_export.json",
    ):
        assert (export / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(export)
    config = AutoConfig.from_pretrained(export)
    assert (
        config.use_cache
        and config.eos_token_id == tok.eos_token_id
        and config.pad_token_id == tok.pad_token_id
    )
    tokens = _hf_greedy(export, _prompts(corpus), 12)
    assert all(len(t) == 12 for t in tokens)
    assert json.loads((export / "scotd_export.json").read_text())["step"] == 24


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
        params = SamplingParams(max_tokens=int(sys.argv[2]), min_tokens=int(sys.argv[2]), temperature=0.0)
        outs = llm.generate(json.loads(sys.argv[3]), params)
        print("TOKENS " + json.dumps([list(o.outputs[0].token_ids) for o in outs]))
    """
)


@pytest.mark.vllm
def test_export_loads_in_vllm_and_matches_transformers(
    fsdp_run: tuple[DistillConfig, StudentRun], corpus: Path, tmp_path: Path
) -> None:
    export = Path(fsdp_run[1].export_uri)
    prompts = _prompts(corpus)
    script = tmp_path / "vllm_generate.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(export), "12", json.dumps(prompts)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TOKENS "))
    assert json.loads(line.removeprefix("TOKENS ")) == _hf_greedy(export, prompts, 12)


def test_label_only_baseline_through_the_job_entrypoint(
    ray_session: str, corpus: Path, tmp_path: Path
) -> None:
    from jobs.distill import main

    argv = ["--corpus", str(corpus), "--out", str(tmp_path), "--label-only", "true", "--max-steps", "6"]
    argv += ["--num-workers", "1", "--strategy", "ddp", "--batch-size", "8", "--tiny.tokenizer", "word"]
    argv += ["--lr", "2e-3", "--warmup-steps", "1", "--log-every-steps", "2", "--checkpoint-every-steps", "6"]
    assert main(argv) == 0
    (run,) = tmp_path.iterdir()
    assert "label-only" in run.name
    s = StudentRun(str(run)).read_summary()
    assert s is not None
    # One row per question: the label-only target, on exactly the CoT corpus's questions.
    corpus_questions = {r["example_id"] for r in pq.read_table(corpus / "train.parquet").to_pylist()}
    assert s.data["rows"]["train"] == s.data["questions"]["train"]
    assert s.data["questions"]["train"] + s.data["questions"]["validation"] == len(corpus_questions)
    assert s.final_step == 6 and (run / "export" / "model.safetensors").is_file()


def test_offline_hub_student_fails_fast_without_starting_ray(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.distill import main

    start = time.monotonic()
    assert main(["--corpus", str(corpus), "--out", str(tmp_path), "--student", "facebook/opt-125m"]) == 2
    assert time.monotonic() - start < 15
    assert "facebook/opt-125m" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
