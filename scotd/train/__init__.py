"""Student training (the ``distill`` stage's components).

Only ``loop`` (and the driver, ``scotd.distill``) import Ray; ``collator``, ``batches``, ``step``,
``distributed``, ``checkpoint``, ``metrics`` and ``export`` need only torch and transformers, so the
GPU benchmark runs the very same training step on a machine without Ray.
"""
