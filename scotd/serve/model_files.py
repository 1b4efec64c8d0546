"""What the ingress knows about the model without loading it: its tokenizer and its context length.

The ingress counts a prompt's tokens with the model's own tokenizer, so a prompt too long for the
model (or for ``max_prompt_tokens``) is a 4xx before any engine — transformers or vLLM — sees it.
For an object-storage export only the small files are fetched (never the weights).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from scotd import storage
from scotd.generation.engines import VLLM_MAX_MODEL_LEN, EngineName, model_context_length, resolve_engine

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


@dataclass(frozen=True)
class ModelInfo:
    count_tokens: Callable[[str], int]  # with the special tokens every engine adds
    context_length: int  # prompt + generated tokens per sequence, as the engine will allow


def _small_files_dir(model: str) -> str:
    """A local directory with the model's config and tokenizer files (a local path as it is)."""
    if "://" not in model:
        return model
    loc = storage.location(model)
    if loc.is_local:
        return loc.path
    dest = tempfile.mkdtemp(prefix="scotd-tokenizer-")
    for info in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=False)):
        if info.type == pafs.FileType.File and not info.path.endswith(WEIGHT_SUFFIXES):
            with loc.fs.open_input_stream(info.path) as src:
                data = src.read()
            with open(os.path.join(dest, posixpath.basename(info.path)), "wb") as out:
                out.write(data)
    return dest


def load_model_info(model: str, engine: EngineName) -> ModelInfo:
    from transformers import AutoConfig, AutoTokenizer

    local = _small_files_dir(model)
    tokenizer: Any = AutoTokenizer.from_pretrained(local)
    context = model_context_length(AutoConfig.from_pretrained(local))
    if resolve_engine(engine) == "vllm":
        context = min(context, VLLM_MAX_MODEL_LEN)
    return ModelInfo(lambda text: len(tokenizer(text)["input_ids"]), context)


def check_model(model: str, engine: EngineName) -> None:
    """Fail fast, naming what to change, when the engine cannot exist or ``model`` is no export."""
    resolve_engine(engine)
    if "://" in model and not storage.location(model).is_local:
        if not storage.exists(storage.location(model), "config.json"):
            raise FileNotFoundError(
                f"model {model!r} holds no config.json: point it at a `scotd distill` export"
            )
        return
    path = storage.location(model).path
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"model {model!r} is not a model directory (no config.json in {path})")
    try:
        load_model_info(path, engine)
    except (OSError, ValueError) as e:
        raise ValueError(f"model {model!r} cannot be loaded: {type(e).__name__}: {str(e)[:200]}") from e
