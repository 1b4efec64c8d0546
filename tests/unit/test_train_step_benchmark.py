"""The GPU benchmark's step is the worker's step: it runs on CPU (``--cpu-smoke``), and FSDP2 (with
activation checkpointing) computes the same loss and gradients as the plain model, for OPT and Llama."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_runs_on_cpu() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_step_gpu.py"), "--cpu-smoke", "--json"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["tokens_per_s"] > 0 and result["batch"] == 4
    assert "import ray" not in (REPO / "benchmarks" / "train_step_gpu.py").read_text()


GRAD_CHECK = textwrap.dedent(
    """
    import copy, sys, warnings
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM
    from scotd.distill import distributed
    from scotd.distill.collator import collate
    from scotd.distill.step import token_loss_sum

    warnings.filterwarnings("ignore")
    cpu = torch.device("cpu")
    distributed.init_single_process(cpu)
    models = {
        "opt": lambda: OPTForCausalLM(OPTConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
            num_attention_heads=4, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0, layerdrop=0.0)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2,
            intermediate_size=64, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)),
    }
    g = torch.Generator().manual_seed(0)
    batch = collate([(torch.randint(4, 128, (n,), generator=g).tolist(), 3) for n in (12, 9)], pad_id=1)
    for name, make in models.items():
        torch.manual_seed(0)
        model = make().train()
        ref = copy.deepcopy(model)
        token_loss_sum(ref, batch).backward()
        wrapped = distributed.wrap_model(model, "fsdp", cpu, bf16=False, activation_checkpointing=True)
        token_loss_sum(wrapped, batch).backward()
        ref_grads = dict(ref.named_parameters())
        for n, p in wrapped.named_parameters():
            grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            torch.testing.assert_close(grad, ref_grads[n].grad, rtol=1e-5, atol=1e-6, msg=f"{name} {n}")
        print(name, "ok")
    """
)


def test_fsdp2_with_activation_checkpointing_matches_the_plain_model() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", GRAD_CHECK], capture_output=True, text=True, timeout=180, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["opt", "ok", "llama", "ok"]
