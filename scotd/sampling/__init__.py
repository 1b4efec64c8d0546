"""The teacher sampling stage: examples → prompt requests → Ray Data sampler actors → ledger → corpus."""
