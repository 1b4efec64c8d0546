"""Any Hugging Face causal LM as a student: resolve the name, load tokenizer and model, per-family tokens.

``--student`` accepts:

- ``tiny`` — built locally by ``scotd.student.tiny`` from the corpus (the driver does it).
- a local directory (``./my-opt``) or an object-storage URI (``s3://bucket/opt``) holding a
  ``save_pretrained`` checkpoint; URIs are copied to a local cache before loading.
- a hub id (``facebook/opt-1.3b``, ``meta-llama/...``, ``Qwen/Qwen2.5-0.5B``, ``gpt2``): used from
  the local Hugging Face cache if it is there, otherwise only if the hub answers a short TCP probe.
  Offline and not cached, ``resolve_student`` raises ``StudentUnavailable`` within seconds.

Families differ in their special tokens, and ``TokenLayout`` captures what matters to training:
OPT prepends ``</s>`` (its BOS is its EOS), Llama prepends ``<s>`` and has no pad token, GPT-2 and
Qwen prepend nothing and pad with their EOS. The layout is *measured* from the tokenizer (encode
with and without special tokens), not looked up by family name, so unknown families work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

StudentKind = Literal["tiny", "local", "uri", "hub"]
TINY = "tiny"


class StudentUnavailable(RuntimeError):
    """The student cannot be loaded here (missing directory, or a hub id while offline and not cached)."""


@dataclass(frozen=True)
class StudentSource:
    """Where a student comes from. ``path`` is what ``from_pretrained`` gets (after ``local_path``)."""

    name: str
    kind: StudentKind
    path: str
    local_files_only: bool = False


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a slash is meant as a directory."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def resolve_student(name: str) -> StudentSource:
    """Classify ``name`` and check it can be loaded here, failing fast with what to do instead.

    Raises ``StudentUnavailable``.
    """
    if name == TINY:
        return StudentSource(name, "tiny", "")
    if "://" in name:
        return StudentSource(name, "uri", name.rstrip("/"))
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise StudentUnavailable(
                f"student directory {local} has no config.json (not a save_pretrained dir)"
            )
        return StudentSource(name, "local", str(local.resolve()))
    if _looks_like_path(name):
        raise StudentUnavailable(f"student directory {name} does not exist")
    return _resolve_hub(name)


def _resolve_hub(repo_id: str) -> StudentSource:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return StudentSource(repo_id, "hub", repo_id, local_files_only=True)
    from scotd.tasks.hub import HubUnavailable, check_hub_reachable

    try:
        check_hub_reachable()
    except HubUnavailable as e:
        raise StudentUnavailable(
            f"student {repo_id!r} is not a local directory, is not in the Hugging Face cache, and the hub "
            f"is unreachable ({e}). Download it where the hub is reachable (`hf download {repo_id}`) and "
            "copy the cache, pass a local directory or an s3:// / gs:// URI, or use --student tiny."
        ) from None
    return StudentSource(repo_id, "hub", repo_id)


def local_path(source: StudentSource) -> str:
    """A path or hub id ``from_pretrained`` can read on THIS node: URIs are copied once to a local cache."""
    from scotd import storage

    return storage.local_dir(source.path) if source.kind == "uri" else source.path


@dataclass(frozen=True)
class TokenLayout:
    """The special tokens around a training sequence, measured from the tokenizer.

    A sequence is ``prompt_ids + target_ids + [eos_id]`` where ``prompt_ids`` is exactly what the
    tokenizer gives the bare prompt at inference (``prefix_ids`` — e.g. BOS — included). ``pad_id``
    fills batches; padding is found by position (the attention mask), never by comparing ids, so a
    pad equal to EOS (GPT-2, Qwen) cannot mask the real EOS.
    """

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    eos_id: int
    pad_id: int


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> TokenLayout:
    """Give ``tokenizer`` a pad token if it has none (unk, else eos) and measure its ``TokenLayout``.

    Raises ``ValueError`` when the tokenizer has no EOS token (training could not teach stopping).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the student's tokenizer has no eos_token; set one in its tokenizer_config.json")
    if tokenizer.pad_token_id is None:
        # Prefer a pad distinct from EOS, so generation never confuses padding with a stop.
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    probe = "Q: x\nA: "
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    start = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), 0)
    return TokenLayout(
        prefix_ids=tuple(full[:start]),
        suffix_ids=tuple(full[start + len(bare) :]),
        eos_id=int(tokenizer.eos_token_id),
        pad_id=int(tokenizer.pad_token_id),
    )


def load_tokenizer(source: StudentSource, path: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path or local_path(source), local_files_only=source.local_files_only)
    # Training pads on the right; the collator builds masks itself, but keep the saved config honest.
    tok.padding_side = "right"
    return tok


def load_model(source: StudentSource, path: str | None = None, dtype: torch.dtype | None = None) -> Any:
    """``AutoModelForCausalLM`` in ``dtype`` (default fp32 master weights), SDPA attention, no KV cache."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path or local_path(source),
        dtype=dtype or torch.float32,
        local_files_only=source.local_files_only,
        attn_implementation="sdpa",
    )
    model.config.use_cache = False  # the cache is for generation; in training it only costs memory
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks (what FSDP shards one by one), found by the model's ``_no_split_modules``.

    Llama/Qwen: ``LlamaDecoderLayer``/``Qwen2DecoderLayer``; OPT: ``OPTDecoderLayer``; GPT-2: ``GPT2Block``.
    Raises ``ValueError`` if none is found.
    """
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers found (looked for {sorted(names)})")
    return layers
