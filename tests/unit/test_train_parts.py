"""Distill components without Ray: data order, held-out split, label-only rows, run names, the step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from scotd.config import ConfigError, load_config
from scotd.corpus.demo import write_demo_corpus
from scotd.distill import distributed
from scotd.distill.batches import EpochPlan, micro_batches, rank_slice
from scotd.distill.collator import collate, count_loss_tokens, encode_pair, texts_for_row
from scotd.distill.config import DistillConfig, run_name
from scotd.distill.dataset import label_only_group, validation_questions
from scotd.distill.step import build_optimizer, build_scheduler, lr_lambda, train_step
from scotd.student.factory import StudentSource, load_model, load_tokenizer, prepare_tokenizer
from scotd.student.tiny import TinySpec, build_tiny_student

REPO = Path(__file__).resolve().parents[2]
IDS = [f"q{i // 3}" for i in range(30)]  # 10 questions, 3 rationales each


def test_balanced_plan_draws_one_rationale_per_question_per_epoch() -> None:
    plan = EpochPlan(IDS, balanced=True, seed=0, batch_size=8)
    assert plan.epoch_size == 10
    orders = [plan.order(e) for e in range(4)]
    for order in orders:
        assert sorted(IDS[i] for i in order) == sorted(set(IDS))
    assert len({tuple(sorted(o)) for o in orders}) > 1  # different rationales in different epochs
    assert EpochPlan(IDS, balanced=True, seed=0, batch_size=8).order(2) == orders[2]  # deterministic


def test_unbalanced_plan_uses_every_row_and_spans_epochs() -> None:
    plan = EpochPlan(IDS, balanced=False, seed=1, batch_size=8)
    assert sorted(plan.order(0)) == list(range(30))
    span = plan.take(25, 10)  # 5 from the end of epoch 0, 5 from the start of epoch 1
    assert span == plan.order(0)[25:] + plan.order(1)[:5]
    assert plan.position(65) == type(plan.position(0))(65, 2, 5)


def test_global_batches_do_not_depend_on_the_number_of_workers() -> None:
    plan = EpochPlan(IDS, balanced=True, seed=0, batch_size=8)
    batch = plan.batch(40)
    assert batch == plan.take(40, 8)
    for world in (1, 2, 4):
        shards = [rank_slice(batch, r, world) for r in range(world)]
        assert [i for s in shards for i in s] == batch
    with pytest.raises(ValueError):
        rank_slice(batch, 0, 3)
    assert micro_batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]


def test_length_grouping_sorts_within_windows_and_keeps_the_stream() -> None:
    lengths = [(7 * i) % 23 for i in range(30)]
    plain = EpochPlan(IDS, balanced=False, seed=3, batch_size=4)
    grouped = EpochPlan(IDS, balanced=False, seed=3, batch_size=4, lengths=lengths, group_batches=3)
    window = [grouped.batch(s * 4) for s in range(3)]  # steps 0-2 = one window of 12 samples
    assert sorted(i for b in window for i in b) == sorted(plain.take(0, 12))  # same samples...
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in window]
    plain_spreads = [
        max(lengths[i] for i in b) - min(lengths[i] for i in b)
        for b in (plain.batch(s * 4) for s in range(3))
    ]
    assert sum(spreads) < sum(plain_spreads)  # ...in batches of similar length
    again = EpochPlan(IDS, balanced=False, seed=3, batch_size=4, lengths=lengths, group_batches=3)
    assert again.batch(4 * 7) == grouped.batch(4 * 7)  # resuming mid-window: the same batch
    with pytest.raises(ValueError):
        grouped.batch(6)


def test_validation_questions_are_held_out_whole() -> None:
    held = validation_questions(IDS, 0.2, 256, seed=0)
    assert len(held) == 2 and held <= set(IDS)
    assert validation_questions(IDS, 0.2, 256, seed=0) == held
    assert validation_questions(IDS, 0.9, 1, seed=0).__len__() == 1  # the cap
    assert validation_questions(IDS, 0.99, 256, seed=0).__len__() == 9  # one question stays for training
    assert validation_questions(IDS, 0.0, 256, seed=0) == set()


def test_label_only_group_takes_the_majority_label() -> None:
    rows = [
        {"example_id": "q", "rationale": "r0", "label": "b", "sample_index": 2},
        {"example_id": "q", "rationale": "r1", "label": "a", "sample_index": 0},
        {"example_id": "q", "rationale": "r2", "label": "b", "sample_index": 1},
    ]
    out = label_only_group(pa.Table.from_pylist(rows)).to_pylist()
    assert out == [{"example_id": "q", "rationale": "", "label": "b", "sample_index": 1}]


def test_run_name_hashes_what_is_trained_only() -> None:
    base = load_config(DistillConfig, overrides={"corpus": "c"})
    same = load_config(
        DistillConfig, overrides={"corpus": "c", "num_workers": 2, "strategy": "ddp", "out": "s3://b/x"}
    )
    other = load_config(DistillConfig, overrides={"corpus": "c", "lr": 1e-3})
    name = run_name(base, "/data/corpus/synthetic-train-balanced")
    assert name.startswith("tiny-synthetic-train-balanced-")
    assert run_name(same, "/data/corpus/synthetic-train-balanced") == name
    assert run_name(other, "/data/corpus/synthetic-train-balanced") != name
    assert run_name(base, "/data/corpus/synthetic-train-balanced", "rebuilt") != name  # new content
    lo = load_config(DistillConfig, overrides={"label_only": True, "student": "facebook/opt-125m"})
    assert run_name(lo, "s3://b/corpus/csqa-balanced/train.parquet").startswith(
        "opt-125m-csqa-balanced-label-only-"
    )


def test_config_errors_name_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="divisible by num_workers"):
        load_config(DistillConfig, overrides={"batch_size": 10, "num_workers": 3})
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(DistillConfig, overrides={"lrr": 1})
    cfg = load_config(DistillConfig, REPO / "jobs/configs/distill_synthetic.yaml")
    assert cfg.lr == 1e-3 and cfg.tiny.tokenizer == "word" and cfg.max_steps >= 800
    paper = load_config(DistillConfig)
    assert (paper.lr, paper.adam_eps, paper.warmup_steps, paper.grad_clip, paper.batch_size) == (
        2e-5,
        1e-5,
        500,
        0.5,
        32,
    )


def test_lr_schedules() -> None:
    f = lr_lambda("linear", 500, 20000)
    assert f(0) == pytest.approx(1 / 500) and f(499) == pytest.approx(1.0)
    assert f(500) == pytest.approx(1.0) and f(20000) == pytest.approx(0.0)
    assert lr_lambda("cosine", 0, 100)(50) == pytest.approx(0.5)
    assert lr_lambda("constant", 10, 100)(90) == 1.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudentSource, list[tuple[tuple[int, ...], int]]]:
    corpus = write_demo_corpus(tmp_path_factory.mktemp("corpus"), questions=40, per_question=2)
    rows = pq.read_table(corpus / "train.parquet").to_pylist()
    texts = [t for row in rows for t in texts_for_row(row)]
    path = build_tiny_student(texts, tmp_path_factory.mktemp("tiny"), TinySpec(tokenizer="word"))
    source = StudentSource("tiny", "local", str(path))
    tok = load_tokenizer(source)
    layout = prepare_tokenizer(tok)
    pairs = [encode_pair(tok, layout, *texts_for_row(row), 256) for row in rows]
    return source, [(p.input_ids, p.prompt_len) for p in pairs]


def _grads_after_step(source: StudentSource, seqs: list, micro: int) -> tuple[float, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = load_model(source)
    opt = build_optimizer(
        model, kind="adam", lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, device=torch.device("cpu")
    )
    sched = build_scheduler(opt, "constant", 0, 10)
    batches = [
        collate(list(mb), pad_id=0) for mb in (seqs[i : i + micro] for i in range(0, len(seqs), micro))
    ]
    tokens = sum(count_loss_tokens(b["labels"]) for b in batches)
    stats = train_step(
        model, opt, sched, batches, global_tokens=tokens, world_size=1, grad_clip=0.0,
        device=torch.device("cpu"), grad_sync=distributed.grad_sync, autocast=distributed.autocast_factory("ddp", torch.device("cpu"), False),
    )  # fmt: skip
    return float(stats.loss_sum) / tokens, [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_gradient_accumulation_matches_one_big_batch(tiny: tuple[StudentSource, list]) -> None:
    """Token-weighted normalisation: 4 micro-batches of 2 == 1 batch of 8, whatever their lengths."""
    source, seqs = tiny
    loss_a, grads_a = _grads_after_step(source, seqs[:8], micro=8)
    loss_b, grads_b = _grads_after_step(source, seqs[:8], micro=2)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_train_step_lowers_the_loss(tiny: tuple[StudentSource, list]) -> None:
    source, seqs = tiny
    torch.manual_seed(0)
    model = load_model(source)
    cpu = torch.device("cpu")
    opt = build_optimizer(
        model, kind="adamw", lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, device=cpu
    )
    sched = build_scheduler(opt, "constant", 0, 100)
    batch = collate(seqs[:16], pad_id=0)
    tokens = count_loss_tokens(batch["labels"])
    losses = []
    for _ in range(15):
        stats = train_step(
            model, opt, sched, [batch], global_tokens=tokens, world_size=1, grad_clip=1.0, device=cpu,
            grad_sync=distributed.grad_sync, autocast=distributed.autocast_factory("ddp", cpu, False),
        )  # fmt: skip
        losses.append(float(stats.loss_sum) / tokens)
        assert not stats.skipped and stats.grad_norm > 0
    assert losses[-1] < losses[0] - 1.0, losses
    assert Counter(round(x, 3) for x in losses).most_common(1)[0][1] == 1  # it moves every step
