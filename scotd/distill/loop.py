"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (the worker side of distill; the
driver side is ``run.py`` and ``dataset.py``).

Per worker: read the tokenised rows through ``ray.train.get_dataset_shard``, load the student,
wrap it (FSDP2 or DDP), restore the latest checkpoint if Ray Train has one (a restarted worker
group, or a re-run of the same command), then loop over ``scotd.distill.step.train_step``:

- every ``log_every_steps``: all-reduce the loss, ``ray.train.report`` metrics, rank 0 appends to
  ``metrics.jsonl`` and prints a progress line;
- every ``eval_every_steps`` (and at the start of a fresh run, and at the end): validation loss;
- every ``checkpoint_every_steps`` and at the last step: a DCP checkpoint reported with
  ``ray.train.report(metrics, checkpoint=...)`` by every rank (Ray merges the shards);
- after the last step: the Hugging Face export (skipped if already complete for that step).

``train_loop_config`` (built by ``scotd.distill.run``): ``config`` (``DistillConfig`` as JSON), ``run_uri``,
``student`` (a ``StudentSource`` as a dict), ``balanced``, ``fingerprint``, ``has_validation``.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from typing import Any

import ray.train
import ray.train.torch
import torch

from scotd import metrics as scotd_metrics
from scotd import storage
from scotd.distill import checkpoint, distributed
from scotd.distill.batches import EpochPlan, micro_batches, rank_slice
from scotd.distill.collator import collate, count_loss_tokens
from scotd.distill.config import DistillConfig
from scotd.distill.dataset import COL_EXAMPLE_ID, COL_INPUT_IDS, COL_PROMPT_LEN, COL_ROW_KEY
from scotd.distill.export import export_done, export_model
from scotd.distill.metrics import MetricsLog, flops_per_token, model_shape, peak_flops, print_progress, say
from scotd.distill.step import build_optimizer, build_scheduler, eval_loss_sum, train_step
from scotd.student.factory import StudentSource, load_model, load_tokenizer, prepare_tokenizer
from scotd.student.tiny import count_parameters

TokenRow = tuple[list[int], int]  # (input_ids, prompt_len)
FAULT_MARKER = "fault_injected.json"


def read_train_rows(it: Any) -> tuple[list[str], list[TokenRow]]:
    """All training rows from the worker's (unsplit) shard, in canonical ``row_key`` order.

    Returns ``(example_ids, [(input_ids, prompt_len), ...])``; the order is identical on every
    worker whatever order Ray Data delivers blocks in.
    """
    rows: list[tuple[str, str, list[int], int]] = []
    for batch in it.iter_batches(batch_size=4096, batch_format="pyarrow"):
        rows.extend(
            zip(
                batch[COL_ROW_KEY].to_pylist(),
                batch[COL_EXAMPLE_ID].to_pylist(),
                batch[COL_INPUT_IDS].to_pylist(),
                batch[COL_PROMPT_LEN].to_pylist(),
                strict=True,
            )
        )
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows], [(r[2], r[3]) for r in rows]


class _Worker:
    """State of one training worker; ``run`` is the whole loop."""

    def __init__(self, loop_config: dict[str, Any]) -> None:
        self.cfg = DistillConfig.model_validate(loop_config["config"])
        self.run_loc = storage.location(loop_config["run_uri"])
        self.fingerprint = str(loop_config["fingerprint"])
        self.has_validation = bool(loop_config["has_validation"])
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        if self.cfg.torch_threads:
            torch.set_num_threads(self.cfg.torch_threads)
        torch.manual_seed(self.cfg.seed + self.rank)
        self.bf16 = self.cfg.bf16(self.device.type == "cuda")

        example_ids, self.rows = read_train_rows(ray.train.get_dataset_shard("train"))
        self.plan = EpochPlan(
            example_ids,
            bool(loop_config["balanced"]),
            self.cfg.seed,
            lengths=[len(ids) for ids, _ in self.rows],
            group_batches=self.cfg.length_grouping_steps,
            batch_size=self.cfg.batch_size,
        )
        self.val_shard = ray.train.get_dataset_shard("validation") if self.has_validation else None

        source = StudentSource(**loop_config["student"])
        self.tokenizer = load_tokenizer(source)
        self.layout = prepare_tokenizer(self.tokenizer)
        model = load_model(source)
        self.base_config = model.config
        self.n_params = count_parameters(model)
        self.model = distributed.wrap_model(
            model,
            self.cfg.strategy,
            self.device,
            bf16=self.bf16,
            activation_checkpointing=self.cfg.activation_checkpointing,
        )
        self.autocast = distributed.autocast_factory(self.cfg.strategy, self.device, self.bf16)
        self.optimizer = build_optimizer(
            self.model,
            kind=self.cfg.optimizer,
            lr=self.cfg.lr,
            betas=(self.cfg.adam_beta1, self.cfg.adam_beta2),
            eps=self.cfg.adam_eps,
            weight_decay=self.cfg.weight_decay,
            device=self.device,
        )
        self.scheduler = build_scheduler(
            self.optimizer, self.cfg.schedule, self.cfg.warmup_steps, self.cfg.max_steps
        )
        self.state = checkpoint.TrainerState(fingerprint=self.fingerprint, world_size=self.world)
        self.metrics = MetricsLog(self.run_loc) if self.rank == 0 else None
        self._run_tag = scotd_metrics.run_tag(self.run_loc.uri)
        self._checkpointed_at = time.time()
        self._layers, self._hidden = model_shape(self.base_config)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else ""
        self.peak = peak_flops(name, self.cfg.peak_tflops) if self.device.type == "cuda" else None

    # -- checkpoints ---------------------------------------------------------------------------
    def restore(self) -> bool:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return False
        with ckpt.as_directory() as d:
            found = checkpoint.read_state(d).fingerprint
            if found != self.fingerprint:  # e.g. --name reused for a different recipe
                raise RuntimeError(
                    f"checkpoint {ckpt.path} belongs to a different run (fingerprint {found} != "
                    f"{self.fingerprint}); use another --name or --out"
                )
            self.state = checkpoint.load(
                d, self.model, self.optimizer, self.scheduler, self.rank, self.cfg.seed
            )
        if self.metrics is not None:
            self.metrics.truncate_after(self.state.step)
            self.metrics.add(
                {"event": "resume", "step": self.state.step, "world_size": self.world, "time": time.time()}
            )
            self.metrics.flush()
            say(f"resumed from checkpoint at step {self.state.step} ({ckpt.path})")
        return True

    def save_and_report(self, metrics: dict[str, Any]) -> None:
        pos = self.plan.position(self.state.samples_seen)
        self.state.epoch, self.state.offset = pos.epoch, pos.offset
        self.state.scheduler = self.scheduler.state_dict()
        self.state.world_size = self.world
        with tempfile.TemporaryDirectory(prefix="scotd-ckpt-") as tmp:
            checkpoint.save(tmp, self.model, self.optimizer, self.state, self.rank)
            ray.train.report(
                {**metrics, "step": self.state.step, "checkpoint": True},
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
            )
        self._checkpointed_at = time.time()
        if self.rank == 0:
            scotd_metrics.set_gauge("scotd_distill_checkpoint_age_seconds", 0.0, run=self._run_tag)
            scotd_metrics.set_gauge(
                "scotd_distill_last_checkpoint_timestamp_seconds", self._checkpointed_at, run=self._run_tag
            )

    # -- data ----------------------------------------------------------------------------------
    def step_batches(self) -> list[dict[str, torch.Tensor]]:
        rows = self.plan.batch(self.state.samples_seen)
        mine = rank_slice(rows, self.rank, self.world)
        return [
            collate([self.rows[i] for i in mb], self.layout.pad_id, self.cfg.pad_to_multiple_of)
            for mb in micro_batches(mine, self.cfg.micro_batch)
        ]

    def validation_loss(self) -> float | None:
        if self.val_shard is None:
            return None
        self.model.eval()
        loss = torch.zeros((), dtype=torch.float64)
        tokens = 0
        for batch in self.val_shard.iter_batches(batch_size=self.cfg.eval_batch_size, batch_format="pyarrow"):
            seqs = list(zip(batch[COL_INPUT_IDS].to_pylist(), batch[COL_PROMPT_LEN].to_pylist(), strict=True))
            padded = collate(seqs, self.layout.pad_id, self.cfg.pad_to_multiple_of)
            loss += eval_loss_sum(self.model, padded, self.device, self.autocast).double().cpu()
            tokens += count_loss_tokens(padded["labels"])
        self.model.train()
        total, count = distributed.all_reduce_sum([float(loss), tokens], self.device)
        return total / count if count else None  # fewer held-out rows than workers: no estimate

    # -- loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        resumed = self.restore()
        start_step = self.state.step
        window: dict[str, float] = {"loss": 0.0, "tokens": 0.0, "loss_tokens": 0.0, "time": 0.0, "steps": 0}
        last: dict[str, Any] = {}
        if not resumed and self.has_validation:
            val = self.validation_loss()
            if self.metrics is not None and val is not None:
                self.metrics.add({"step": 0, "val_loss": val, "time": time.time()})
                self.metrics.flush()
        self.model.train()
        while self.state.step < cfg.max_steps:
            t0 = time.perf_counter()  # the whole iteration: batching, token count, step
            batches = self.step_batches()
            local_loss_tokens = sum(count_loss_tokens(b["labels"]) for b in batches)
            local_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
            global_loss_tokens, global_tokens = distributed.all_reduce_sum(
                [local_loss_tokens, local_tokens], self.device
            )
            stats = train_step(
                self.model,
                self.optimizer,
                self.scheduler,
                batches,
                global_tokens=global_loss_tokens,
                world_size=self.world,
                grad_clip=cfg.grad_clip,
                device=self.device,
                grad_sync=distributed.grad_sync,
                autocast=self.autocast,
            )
            elapsed = time.perf_counter() - t0
            self.state.step += 1
            self.state.samples_seen += cfg.batch_size
            window["loss"] += float(stats.loss_sum)
            window["loss_tokens"] += global_loss_tokens
            window["tokens"] += global_tokens
            window["time"] += elapsed
            window["steps"] += 1
            step = self.state.step
            self._maybe_fault()
            done = step >= cfg.max_steps
            due_ckpt = step % cfg.checkpoint_every_steps == 0 or done
            due_eval = step % cfg.eval_every_steps == 0 or done
            if step % cfg.log_every_steps == 0 or due_ckpt or due_eval:
                last = self._log(window, stats.lr, stats.grad_norm, due_eval)
                window = dict.fromkeys(window, 0.0)
                if due_ckpt:
                    self.save_and_report(last)
                else:
                    ray.train.report(last)
        self._export(trained=self.state.step - start_step)

    def _log(self, window: dict[str, float], lr: float, grad_norm: float, with_eval: bool) -> dict[str, Any]:
        (loss_sum,) = distributed.all_reduce_sum([window["loss"]], self.device)
        steps = max(window["steps"], 1.0)
        step_time = window["time"] / steps
        tokens_per_s = window["tokens"] / max(window["time"], 1e-9)
        row: dict[str, Any] = {
            "step": self.state.step,
            "epoch": round(self.state.samples_seen / self.plan.epoch_size, 3),
            "loss": loss_sum / max(window["loss_tokens"], 1.0),
            "lr": lr,
            "grad_norm": grad_norm,
            "step_time_s": round(step_time, 5),
            "tokens_per_s": round(tokens_per_s, 1),
            "steps_per_s": round(1.0 / step_time, 3) if step_time else None,
            "time": time.time(),
        }
        if self.peak:
            seq = window["tokens"] / (steps * self.cfg.batch_size)
            row["mfu"] = (
                tokens_per_s * flops_per_token(self.n_params, self._layers, self._hidden, seq) / self.peak
            )
        if with_eval:
            val = self.validation_loss()
            if val is not None:
                row["val_loss"] = val
        if self.metrics is not None:
            self.metrics.add(row)
            self.metrics.flush()
            print_progress(row, self.cfg.max_steps)
            self._export_gauges(row)
        return row

    def _export_gauges(self, row: dict[str, Any]) -> None:
        """Rank 0: the row just logged to ``metrics.jsonl`` as ``scotd_distill_*`` gauges."""
        run = self._run_tag
        for name, key in (
            ("scotd_distill_loss", "loss"),
            ("scotd_distill_val_loss", "val_loss"),
            ("scotd_distill_tokens_per_second", "tokens_per_s"),
            ("scotd_distill_step_seconds", "step_time_s"),
            ("scotd_distill_mfu", "mfu"),
            ("scotd_distill_step", "step"),
        ):
            scotd_metrics.set_gauge(name, row.get(key), run=run)
        scotd_metrics.set_gauge(
            "scotd_distill_checkpoint_age_seconds", time.time() - self._checkpointed_at, run=run
        )

    def _maybe_fault(self) -> None:
        """The chaos drill: SIGKILL this process once per run (a marker in the run dir says it happened)."""
        fault = self.cfg.fault
        if fault.kill_rank != self.rank or fault.kill_at_step != self.state.step:
            return
        if storage.exists(self.run_loc, FAULT_MARKER):
            return
        storage.write_bytes(
            self.run_loc, FAULT_MARKER, f'{{"step": {self.state.step}, "rank": {self.rank}}}'.encode()
        )
        say(f"fault injection: rank {self.rank} kills itself (SIGKILL) after step {self.state.step}")
        os.kill(os.getpid(), signal.SIGKILL)

    def _export(self, trained: int) -> None:
        if export_done(self.run_loc, self.cfg.max_steps):
            return
        uri = export_model(
            self.model,
            self.base_config,
            self.tokenizer,
            self.layout,
            self.run_loc,
            rank=self.rank,
            step=self.state.step,
            info={
                "fingerprint": self.fingerprint,
                "n_params": self.n_params,
                "trained_steps_last_attempt": trained,
            },
        )
        if self.metrics is not None and uri is not None:
            self.metrics.add({"event": "export", "step": self.state.step, "uri": uri, "time": time.time()})
            self.metrics.flush()
            say(f"exported the student to {uri}")
        distributed.barrier()


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point given to ``TorchTrainer``."""
    _Worker(loop_config).run()
