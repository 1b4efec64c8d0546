"""``scotd status DIR``: where a run stands, read from its directory alone (no Ray, no process to ask).

``read.read_status`` turns any directory scotd writes (sample, corpus, distill, eval, pipeline,
experiment; a path or an object-storage URI) into a ``model.RunStatus``; ``render`` prints it on
one screen; ``cli`` is the stage entry point.
"""
