"""What the serving benchmarks share: a Serve HTTP proxy on a free loopback port, and a model."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from scotd import prompts
from scotd.student.tiny import TinySpec, build_tiny_student
from scotd.tasks import load_task


def start_serve_on_loopback(**http_options: Any) -> int:
    """``serve.start`` on 127.0.0.1 and a free port (only loopback traffic); returns the port."""
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port, **http_options})
    return port


def model_or_tiny(model: str | None, tmp: str) -> Path:
    """``model`` when given, else a tiny random-init student built in ``tmp`` (no download)."""
    if model:
        return Path(model)
    exs = load_task("synthetic", "train", limit=300).examples
    texts = [t for ex in exs for t in (prompts.student_prompt(ex), "So the answer is: 7\n\n")]
    return build_tiny_student(texts, Path(tmp) / "tiny", TinySpec())
