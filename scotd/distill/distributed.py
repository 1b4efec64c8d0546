"""Everything that touches ``torch.distributed`` for training: wrapping, gradient sync, reductions.

Ray-free: Ray Train (or ``torchrun``, or ``init_single_process``) creates the process group; this
module only uses it. Strategies:

- ``fsdp``: FSDP2 ``fully_shard`` on every decoder layer, then on the root (embeddings, final norm
  and the tied LM head live in the root's group). Parameters, gradients and optimiser state are
  sharded; on GPU with bf16, ``MixedPrecisionPolicy`` computes in bf16 and reduces gradients in
  fp32 while the fp32 master weights stay sharded.
- ``ddp``: ``DistributedDataParallel``; on GPU with bf16 the forward runs under ``torch.autocast``.

Activation checkpointing uses the model's own ``gradient_checkpointing_enable`` (non-reentrant,
so it composes with FSDP2's hooks) and works for every Hugging Face family.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist

from scotd.student.factory import decoder_layers

Strategy = Literal["fsdp", "ddp"]


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def init_single_process(device: torch.device) -> None:
    """A world of one (for benchmarks without a launcher), so the FSDP/DDP code paths run unchanged."""
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:  # any free port: two benchmarks on one machine must not collide
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def wrap_model(
    model: torch.nn.Module,
    strategy: Strategy,
    device: torch.device,
    *,
    bf16: bool,
    activation_checkpointing: bool,
) -> torch.nn.Module:
    """Move ``model`` to ``device`` and wrap it for data-parallel training over the current world.

    For ``fsdp`` the returned module is ``model`` itself (``fully_shard`` works in place).
    """
    if activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[operator]
    model.to(device)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (world_size(),))
        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16
            else MixedPrecisionPolicy()
        )
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    raise ValueError(f"unknown strategy {strategy!r}; choose fsdp or ddp")


@contextlib.contextmanager
def grad_sync(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce/reduce-scatter on all but the last micro-batch of a step."""
    if enabled:
        yield
        return
    no_sync: Any = getattr(model, "no_sync", None)  # DDP
    set_sync: Any = getattr(model, "set_requires_gradient_sync", None)  # FSDP2
    if no_sync is not None:
        with no_sync():
            yield
    elif set_sync is not None:
        set_sync(False)
        try:
            yield
        finally:
            set_sync(True)
    else:
        yield


def autocast_factory(strategy: Strategy, device: torch.device, bf16: bool) -> Callable[[], Any]:
    """Context for the forward pass: autocast for DDP+bf16; FSDP2 casts through its policy instead."""
    if bf16 and strategy == "ddp":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum a few scalars over all ranks (one collective); identity without a process group."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(x) for x in t.tolist()]


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
