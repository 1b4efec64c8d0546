"""scotd: Symbolic Chain-of-Thought Distillation as a Ray system.

The pure core (``tasks``, ``prompts``, ``parsing``, ``voting``) has no Ray, OpenAI or vLLM
imports, so the teacher, the evaluator and the server always agree on what an answer is.
"""

__version__ = "0.1.0"
