"""Training metrics: FLOPs per token, MFU, and rank 0's ``metrics.jsonl`` (Ray-free).

MFU (model FLOPs utilisation) = achieved model FLOP/s / peak FLOP/s, with the PaLM paper's
(Chowdhery et al. 2022, appendix B) training FLOPs per token ``6 N + 12 L H S``: N parameters
(embeddings included), L layers, H hidden size, S sequence length; recomputation for activation
checkpointing is not counted (that would be hardware FLOPs). Tokens are real (non-pad) tokens.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from scotd import storage
from scotd.artifacts import StudentRun

# Dense bf16 tensor-core peaks (vendor specs, TFLOP/s). A measured matmul peak is lower (an H200
# reached ≈ 790): pass --peak-tflops to report MFU against a measured figure instead.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
}


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: float) -> float:
    """Training (forward + backward) FLOPs per token."""
    return 6.0 * n_params + 12.0 * n_layers * hidden * seq_len


def peak_flops(device_name: str, override_tflops: float | None = None) -> float | None:
    """Peak FLOP/s for ``device_name`` (e.g. ``NVIDIA H200``), or ``None`` when unknown (no MFU then)."""
    if override_tflops:
        return override_tflops * 1e12
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12
    return None


def model_shape(config: Any) -> tuple[int, int]:
    """``(layers, hidden)`` from a Hugging Face config, whatever the family's attribute names."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
    return int(layers or 0), int(hidden or 0)


class MetricsLog:
    """Rank 0's ``metrics.jsonl`` in the run directory (local path or object store) plus stdout lines.

    The file is rewritten atomically on ``flush`` (object stores cannot append). On resume,
    ``truncate_after(step)`` drops rows from steps the restarted run will redo, so every step
    appears once; ``event`` rows (``resume``, ``export``) are kept.
    """

    def __init__(self, run: storage.Location, name: str = StudentRun.METRICS) -> None:
        self._run = run
        self._name = name
        raw = storage.read_bytes(run, name)
        self._rows: list[dict[str, Any]] = (
            [json.loads(x) for x in raw.decode().splitlines() if x.strip()] if raw else []
        )

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def truncate_after(self, step: int) -> None:
        self._rows = [r for r in self._rows if "event" in r or r.get("step", 0) <= step]

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self._rows)
        storage.write_bytes(self._run, self._name, body.encode())


def progress_line(row: dict[str, Any], max_steps: int) -> str:
    """One human line per log interval, e.g. ``step 120/800 loss 1.234 val 1.301 lr 1.0e-03 ...``."""
    parts = [f"step {row['step']}/{max_steps}"]
    if "loss" in row:
        parts.append(f"loss {row['loss']:.4f}")
    if "val_loss" in row:
        parts.append(f"val {row['val_loss']:.4f}")
    if "lr" in row:
        parts.append(f"lr {row['lr']:.1e}")
    if "tokens_per_s" in row:
        parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
    if "step_time_s" in row:
        parts.append(f"{row['step_time_s'] * 1000:.0f} ms/step")
    if row.get("mfu") is not None:
        parts.append(f"MFU {row['mfu']:.1%}")
    return " ".join(parts)


def say(message: str) -> None:
    """One line on stdout. Not ``print``: Ray Train patches ``print`` to log AND echo, doubling every line."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def print_progress(row: dict[str, Any], max_steps: int) -> None:
    say(progress_line(row, max_steps))
