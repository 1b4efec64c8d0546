"""Tokens/s and MFU of the distill worker's training step on one GPU, without Ray.

Runs ``scotd.distill.step.train_step`` — the exact function every Ray Train worker calls — on an
OPT-1.3B-shaped model with random weights (``OPTConfig``: 24 layers, hidden 2048, 32 heads, FFN
8192, vocab 50272; ≈1.3 B parameters), wrapped exactly as the worker wraps it
(``scotd.distill.distributed.wrap_model``: FSDP2 ``fully_shard`` per decoder layer + root, bf16
compute / fp32 reduce, in a one-process world), with the worker's optimiser (fused Adam) and its
completion-only collator (a quarter of each sequence is prompt). Needs only torch + transformers:
nothing here imports Ray.

MFU = model FLOP/s / peak, model FLOPs per token ``6 N + 12 L H S`` (PaLM, appendix B). The peak
is MEASURED first with large bf16 matmuls (an H200 reaches ≈ 790 TFLOP/s; its spec sheet says
989), and MFU is printed against both. Target: >= 40% of the measured peak.

    python benchmarks/train_step_gpu.py                      # OPT-1.3B shape, seq 512, batch 32
    python benchmarks/train_step_gpu.py --micro-batch 8 --grad-accum 4 --activation-checkpointing
    python benchmarks/train_step_gpu.py --cpu-smoke          # a tiny model on CPU, for CI
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a bare checkout

from scotd.distill import distributed
from scotd.distill.collator import collate, count_loss_tokens
from scotd.distill.metrics import flops_per_token, peak_flops
from scotd.distill.step import build_optimizer, build_scheduler, train_step
from scotd.student.tiny import count_parameters

OPT_1_3B: dict[str, Any] = {
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "ffn_dim": 8192,
    "num_attention_heads": 32,
}
TINY: dict[str, Any] = {"hidden_size": 64, "num_hidden_layers": 2, "ffn_dim": 128, "num_attention_heads": 4}


def measure_peak_tflops(device: torch.device, seconds: float = 2.0, n: int = 8192) -> float:
    """Achieved bf16 matmul TFLOP/s on ``device`` (the practical ceiling MFU is measured against)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            a @ b
        iters += 10
        torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - start) / 1e12


def build_model(shape: dict[str, Any], vocab: int, seq_len: int, device: torch.device) -> Any:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=vocab,
        max_position_embeddings=max(2048, seq_len),
        word_embed_proj_dim=shape["hidden_size"],
        dropout=0.1,
        attention_dropout=0.0,
        use_cache=False,
        **shape,
    )
    config._attn_implementation = "sdpa"
    with torch.device(device):  # initialise on the GPU: 1.3 B parameters initialise slowly on a CPU
        return OPTForCausalLM(config)  # fp32 master weights: the default dtype


def random_batches(
    micro_batch: int, grad_accum: int, seq_len: int, vocab: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Full-length random sequences, the first quarter prompt (masked), built by the worker's collator."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(grad_accum):
        seqs = [
            (torch.randint(4, vocab, (seq_len,), generator=g).tolist(), seq_len // 4)
            for _ in range(micro_batch)
        ]
        out.append(collate(seqs, pad_id=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--micro-batch", type=int, default=16, help="sequences per forward")
    p.add_argument(
        "--grad-accum", type=int, default=2, help="micro-batches per step (16 x 2 = the paper's 32)"
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--strategy", choices=["fsdp", "ddp"], default="fsdp")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="skip the matmul measurement, use this peak"
    )
    p.add_argument(
        "--cpu-smoke", action="store_true", help="tiny model, fp32, on CPU: checks the script runs"
    )
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = p.parse_args(argv)

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        p.error("no CUDA device: run with --cpu-smoke to check the script on a CPU")
    device = torch.device("cpu") if smoke else torch.device("cuda", 0)
    shape, vocab = (TINY, 512) if smoke else (OPT_1_3B, 50272)
    seq_len, micro, accum = (64, 2, 2) if smoke else (args.seq_len, args.micro_batch, args.grad_accum)
    steps, warmup = (3, 1) if smoke else (args.steps, args.warmup)
    bf16 = not smoke
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True

    distributed.init_single_process(device)
    torch.manual_seed(0)
    model = build_model(shape, vocab, seq_len, device)
    n_params = count_parameters(model)
    model = distributed.wrap_model(
        model, args.strategy, device, bf16=bf16, activation_checkpointing=args.activation_checkpointing
    )
    optimizer = build_optimizer(
        model, kind="adam", lr=2e-5, betas=(0.9, 0.999), eps=1e-5, weight_decay=0.0, device=device
    )
    scheduler = build_scheduler(optimizer, "linear", 500, 20000)
    autocast = distributed.autocast_factory(args.strategy, device, bf16)
    batches = random_batches(micro, accum, seq_len, vocab, seed=0)
    loss_tokens = sum(count_loss_tokens(b["labels"]) for b in batches)
    tokens = micro * accum * seq_len

    times, losses = [], []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        stats = train_step(
            model, optimizer, scheduler, batches, global_tokens=loss_tokens, world_size=1,
            grad_clip=0.5, device=device, grad_sync=distributed.grad_sync, autocast=autocast,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(stats.loss_sum) / loss_tokens)

    step_s = statistics.median(times)
    tokens_per_s = tokens / step_s
    flops = (
        flops_per_token(n_params, shape["num_hidden_layers"], shape["hidden_size"], seq_len) * tokens_per_s
    )
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params": n_params,
        "seq_len": seq_len,
        "batch": micro * accum,
        "micro_batch": micro,
        "strategy": args.strategy,
        "activation_checkpointing": args.activation_checkpointing,
        "precision": "bf16" if bf16 else "fp32",
        "step_s_median": round(step_s, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "model_tflops": round(flops / 1e12, 2),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
    }
    if device.type == "cuda":
        measured = args.peak_tflops or measure_peak_tflops(device)
        spec = peak_flops(result["device"])
        result["peak_tflops_measured"] = round(measured, 1)
        result["mfu_vs_measured_peak"] = round(flops / (measured * 1e12), 4)
        result["mfu_vs_spec_peak"] = round(flops / spec, 4) if spec else None
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v}")
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
