"""Turn examples into the exact requests to buy (pure: no Ray, no network).

Each request covers one *chunk* of a question's ``n`` samples (``n`` is split when the endpoint
caps it) and is named by a content hash of everything that determines its answer — model,
prompt text, prompt-set version, sampling parameters, chunk — so a resumed or repeated run maps
onto the same keys and never buys the same answer twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scotd import prompts
from scotd.sample.config import SampleConfig
from scotd.tasks.schema import Example
from scotd.teacher.client import TeacherRequest
from scotd.teacher.ledger import request_key
from scotd.teacher.prices import Price
from scotd.teacher.tokens import counter_for


@dataclass(frozen=True)
class PlannedRequest:
    key: str
    example: Example
    chunk: int
    sample_offset: int
    request: TeacherRequest
    # Prompt tokens reserved before the call: the teacher's tokenizer count when one is available
    # locally, else an upper bound (scotd.teacher.tokens), never an average.
    est_prompt_tokens: int

    @property
    def est_tokens(self) -> int:
        """Upper-bound estimate reserved before the call: the prompt plus every sample at max length."""
        return self.est_prompt_tokens + self.request.n * self.request.max_tokens

    def est_cost(self, price: Price) -> float:
        return price.cost(self.est_prompt_tokens, self.request.n * self.request.max_tokens)


def chunk_sizes(n: int, max_n: int) -> list[int]:
    """Split ``n`` samples into requests of at most ``max_n`` (as even as possible)."""
    count = -(-n // max_n)
    base, extra = divmod(n, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def plan_requests(examples: list[Example], cfg: SampleConfig) -> list[PlannedRequest]:
    """One ``PlannedRequest`` per (example, chunk), in example order."""
    planned: list[PlannedRequest] = []
    prompt_set_cache: dict[str, prompts.PromptSet] = {}
    counter = counter_for(cfg.teacher.model, cfg.teacher.tokenizer)
    for ex in examples:
        name = cfg.prompt_set or prompts.default_prompt_set_name(ex.task)
        if name not in prompt_set_cache:
            prompt_set_cache[name] = prompts.load_prompt_set(name)
        pset = prompt_set_cache[name]
        order = cfg.prompt_order
        text = prompts.teacher_prompt(ex, pset, order)
        messages = tuple((m["role"], m["content"]) for m in prompts.teacher_messages(ex, pset, order))
        # A fixed order shares one prefix per prompt set: named to the provider's cache routing.
        cache_key = f"scotd-{pset.version}"[:64] if order == "fixed" else ""
        prompt_tokens = counter.text(text) if cfg.teacher.api == "completions" else counter.messages(messages)
        offset = 0
        for chunk, size in enumerate(chunk_sizes(cfg.n, cfg.teacher.max_n)):
            identity: dict[str, Any] = {
                "model": cfg.teacher.model,
                "api": cfg.teacher.api,
                "prompt": text if cfg.teacher.api == "completions" else [list(m) for m in messages],
                "prompt_set": pset.version,
                "n": size,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "max_tokens": cfg.max_tokens,
                "stop": cfg.stop,
                "logprobs": cfg.logprobs,
                "chunk": chunk,
            }
            # Omitted fields change what is bought, so they are part of the key; seed is not
            # (it is derived from the key) and neither is the cache key (routing, not content),
            # so omitting them keeps an existing ledger valid.
            omitted = [f for f in cfg.teacher.omit_fields if f not in ("seed", "prompt_cache_key")]
            if omitted:
                identity["omit_fields"] = omitted
            key = request_key(identity)
            request = TeacherRequest(
                api=cfg.teacher.api,
                model=cfg.teacher.model,
                prompt=text if cfg.teacher.api == "completions" else "",
                messages=messages if cfg.teacher.api == "chat" else (),
                n=size,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_tokens,
                stop=(cfg.stop,) if cfg.stop else (),
                logprobs=cfg.logprobs,
                seed=int(key[:8], 16) & 0x7FFFFFFF,  # reproducible where the endpoint honours seeds
                cache_key=cache_key,
            )
            planned.append(PlannedRequest(key, ex, chunk, offset, request, prompt_tokens))
            offset += size
    return planned


def request_to_json(request: TeacherRequest) -> str:
    return json.dumps(
        {**request.__dict__, "messages": [list(m) for m in request.messages], "stop": list(request.stop)},
        ensure_ascii=False,
    )


def request_from_json(blob: str) -> TeacherRequest:
    d = json.loads(blob)
    d["messages"] = tuple(tuple(m) for m in d["messages"])
    d["stop"] = tuple(d["stop"])
    return TeacherRequest(**d)


def planned_rows(
    todo: list[PlannedRequest], price: Price, unusable_before: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """The rows the Ray Data part of sampling (``scotd.sample.dataflow``) consumes."""
    return [
        {
            "key": p.key,
            "request": request_to_json(p.request),
            "est_tokens": p.est_tokens,
            "est_cost": p.est_cost(price),
            "unusable_before": (unusable_before or {}).get(p.key, 0),
        }
        for p in todo
    ]
