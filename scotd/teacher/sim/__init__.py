"""``scotd teacher-sim``: an OpenAI-compatible teacher server that misbehaves like real providers.

Modules: ``config`` (``TeacherSimConfig``), ``server`` (the aiohttp app), ``backends`` (what the
teacher writes), ``synthetic_cot`` (the synthetic task's chain writer), ``replay`` (recorded PaLM
chains for CSQA), ``limits`` (RPM/TPM windows), ``textops`` (tokens, stop, logprobs),
``process`` (run it as a subprocess in tests and pipelines), ``cli`` (the stage entrypoint);
``answer`` (one answer, shared by the online routes and batch lines), ``caching`` (the prompt
cache behind ``cached_tokens``), ``stats`` (billing and cost, per route), and OpenAI's Batch API:
``files`` (in-memory files), ``batch_lines`` (checking input lines, writing output lines),
``batches`` (the state machine and its tasks), ``batch_api`` (the ``/v1/files`` and
``/v1/batches`` handlers).
"""
