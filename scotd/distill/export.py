"""The trained student in Hugging Face format: safetensors, tokenizer, generation config (Ray-free).

``export_model`` is collective (FSDP2 gathers the full weights; every rank must call it); rank 0
writes the directory to local scratch, then copies it to ``<run>/export/`` (a path or an
object-store URI) and writes ``export/scotd_export.json`` last, so a present marker means a
complete export. The result loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and in vLLM.
"""

from __future__ import annotations

import json
import tempfile
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from scotd import storage
from scotd.artifacts import StudentRun
from scotd.student.factory import TokenLayout

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_NEW_TOKENS = 256  # the paper's generation budget for a rationale


def export_done(run: storage.Location, step: int) -> bool:
    """Whether ``<run>/export`` holds a complete export of training step ``step``."""
    return StudentRun(run.uri).exported_step() == step


def export_model(
    model: torch.nn.Module,
    base_config: Any,
    tokenizer: PreTrainedTokenizerBase,
    layout: TokenLayout,
    run: storage.Location,
    *,
    rank: int,
    step: int,
    info: dict[str, Any],
) -> str | None:
    """Gather full weights (all ranks) and write the export (rank 0). Returns its URI on rank 0."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return None
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = base_config.__class__.from_dict(base_config.to_dict())
    config.use_cache = True  # generation wants the KV cache back
    config.pad_token_id = layout.pad_id
    config.eos_token_id = layout.eos_id
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(full, strict=False)
    # Tied LM heads may be absent from (or duplicated in) the state dict; anything else is a bug.
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise RuntimeError(
            f"export: state dict mismatch (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    fresh.tie_weights()
    fresh.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=layout.eos_id,
        pad_token_id=layout.pad_id,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    dest = run.child(StudentRun.EXPORT)
    with tempfile.TemporaryDirectory(prefix="scotd-export-") as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        storage.upload_dir(tmp, dest)
    storage.write_bytes(dest, StudentRun.EXPORT_MARKER, json.dumps({"step": step, **info}, indent=2).encode())
    return dest.uri
