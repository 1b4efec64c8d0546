"""Students: the tiny offline factory (``tiny``) and loading any Hugging Face causal LM (``factory``).

Importable without Ray, so the GPU training-step benchmark and the evaluation/serving stages can
reuse it.
"""
