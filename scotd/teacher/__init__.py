"""The teacher side of SCoTD: sampling chains of thought from an OpenAI-compatible server."""
