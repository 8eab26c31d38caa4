"""``w2sd bench``: latency benchmarks per ../shared/PERF-PROTOCOL.md.

Every configuration runs in its own subprocess (``worker.py``) so that its peak
resident memory is its own; all of them use the same weights and initial latents.
"""
