"""Student evaluation: K sampled rationales per question, voted with the shared core, reported like the paper."""
