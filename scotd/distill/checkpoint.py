"""Sharded training checkpoints with ``torch.distributed.checkpoint`` (DCP). Ray-free.

A checkpoint directory holds:

- ``.metadata`` + ``__<rank>_0.distcp``: model and optimiser state, each rank writing only its own
  shards (FSDP2 DTensors; with DDP rank 0 writes the replicated tensors). Saved and loaded through
  ``get_state_dict`` / ``set_state_dict``, whose keys are the plain model's names whatever the
  wrapper, so a checkpoint loads under FSDP or DDP and on a different number of workers (DCP
  reshards on load).
- ``trainer_state.json`` (rank 0): step, data position (samples seen, epoch, offset), the LR
  scheduler's state, the run fingerprint and the world size it was written with.
- ``rng_rank<r>.pt``: each rank's torch (and CUDA) RNG state, so dropout continues exactly.

Each rank writes into its own local directory; Ray Train merges the ranks' directories into one
checkpoint in the run's storage (a path or an object-store URI) when they are reported together.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from scotd.artifacts import StudentRun

TRAINER_STATE = StudentRun.TRAINER_STATE


@dataclass
class TrainerState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    step: int = 0
    samples_seen: int = 0
    epoch: int = 0
    offset: int = 0
    scheduler: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    world_size: int = 1


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


def save(
    directory: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    rank: int,
) -> None:
    """Collective: every rank calls it with its own local ``directory``."""
    os.makedirs(directory, exist_ok=True)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=directory)
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, os.path.join(directory, _rng_file(rank)))
    if rank == 0:
        with open(os.path.join(directory, TRAINER_STATE), "w", encoding="utf-8") as f:
            json.dump(asdict(state), f, indent=2)


def read_state(directory: str) -> TrainerState:
    """The trainer state of a checkpoint; ``FileNotFoundError`` if it is not a complete one."""
    path = os.path.join(directory, TRAINER_STATE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} is not a scotd checkpoint (no {TRAINER_STATE})")
    with open(path, encoding="utf-8") as f:
        return TrainerState(**json.load(f))


def load(
    directory: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
    seed: int,
) -> TrainerState:
    """Collective: restore model, optimiser, scheduler and RNG in place; return the trainer state.

    A rank with no saved RNG (the world grew) is reseeded from ``(seed, step, rank)``.
    Raises ``FileNotFoundError`` if ``directory`` is not a complete checkpoint.
    """
    state = read_state(directory)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    bundle: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    dcp.load(bundle, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=bundle["model"], optim_state_dict=bundle["optim"])
    scheduler.load_state_dict(state.scheduler)
    rng_path = os.path.join(directory, _rng_file(rank))
    if os.path.isfile(rng_path):
        rng = torch.load(rng_path, weights_only=True)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    else:
        torch.manual_seed(hash((seed, state.step, rank)) & 0x7FFF_FFFF)
    return state
