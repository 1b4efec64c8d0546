"""scotd: Symbolic Chain-of-Thought Distillation as a Ray system.

The pure core (``tasks``, ``prompts``, ``parsing``, ``voting``) has no Ray, OpenAI or vLLM
imports, so the teacher, the evaluator and the server always agree on what an answer is.
"""

__version__ = "0.1.0"

import os as _os

# Before anything imports Ray: keep local clusters on 127.0.0.1 (Ray otherwise binds to the
# machine's external address) and send no usage stats. Explicit settings win.
_os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
