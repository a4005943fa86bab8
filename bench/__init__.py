"""Benchmarks of dit-cache on the reference DiT (CPU) and at real model size (CUDA).

Run from the repository root, e.g. ``python -m bench.fidelity``; results go to ``bench/results/``.
"""
