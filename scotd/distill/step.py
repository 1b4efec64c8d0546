"""One optimiser step of completion-only training: the function every worker (and the GPU benchmark) runs.

Loss normalisation: the step's loss is the mean token cross-entropy over ALL target tokens of the
global batch (every micro-batch on every rank), the same whatever the number of workers or
micro-batches. Each micro-batch contributes ``sum(token CE) / (global_tokens / world_size)``;
DDP and FSDP average gradients over ranks, which divides by ``world_size`` again, giving
``sum over the global batch / global_tokens``. ``global_tokens`` is counted (one all-reduce)
before the forward passes, so no rank waits on another's loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from scotd.distill.collator import IGNORE_INDEX


@dataclass(frozen=True)
class StepStats:
    """``loss_sum``: this rank's summed target-token CE (fp32 scalar, detached); ``grad_norm``: global."""

    loss_sum: torch.Tensor
    grad_norm: float
    lr: float
    skipped: bool


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over target positions.

    ``batch``: ``input_ids``, ``attention_mask``, ``labels``, each ``[B, T]`` (labels unshifted,
    ``-100`` where no loss). Logits ``[B, T, V]`` are upcast to fp32 for the loss. Returns a scalar.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    *,
    global_tokens: float,
    world_size: int,
    grad_clip: float,
    device: torch.device,
    grad_sync: Callable[[torch.nn.Module, bool], AbstractContextManager[Any]],
    autocast: Callable[[], AbstractContextManager[Any]],
) -> StepStats:
    """Forward/backward every micro-batch (gradient sync only on the last), clip, step optimiser and LR.

    A step whose gradient norm is not finite is skipped (no parameter update; the LR schedule still
    advances) and reported as ``skipped``.
    """
    optimizer.zero_grad(set_to_none=True)
    denominator = max(global_tokens, 1.0) / world_size
    total = torch.zeros((), dtype=torch.float32, device=device)
    last = len(micro_batches) - 1
    for i, cpu_batch in enumerate(micro_batches):
        batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
        with grad_sync(model, i == last):
            with autocast():
                loss = token_loss_sum(model, batch)
            (loss / denominator).backward()
        total += loss.detach()
    max_norm = grad_clip if grad_clip > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
        norm = norm.full_tensor()
    grad_norm = float(norm)
    skipped = not math.isfinite(grad_norm)
    lr = float(optimizer.param_groups[0]["lr"])
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    scheduler.step()
    return StepStats(loss_sum=total, grad_norm=grad_norm, lr=lr, skipped=skipped)


@torch.no_grad()
def eval_loss_sum(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> torch.Tensor:
    """Summed target-token CE of one batch, no gradients (the caller divides by the token count)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with autocast():
        return token_loss_sum(model, batch).detach()


def build_optimizer(
    model: torch.nn.Module,
    *,
    kind: str,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    device: torch.device,
) -> torch.optim.Optimizer:
    """``adam`` (the paper's; L2 decay if any) or ``adamw`` (decoupled decay); fused kernels on CUDA.

    Weight decay skips biases and norm weights (1-D tensors).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, betas=betas, eps=eps, **extra)


def lr_lambda(schedule: str, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak LR at step ``s``: linear warm-up, then linear decay to 0 / cosine / constant."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return f


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, warmup_steps, max_steps))
