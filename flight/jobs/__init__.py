"""Inference jobs: the durable job store, the scheduler and the executor."""
