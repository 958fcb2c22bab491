"""Benchmark helpers: shared data, and the medians of compared pairs.

Pairs that are compared run in the same session on the same data and thread
count; their medians are collected here and the ratios printed at the end
(and checked by tests named test_ratio_*), so that a slow machine moves both
sides of a ratio together. ``FPSCALE_BENCH_SCALE`` (default 1.0) scales the
sizes down for a quick run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

SCALE = float(os.environ.get("FPSCALE_BENCH_SCALE", "1.0"))
ROUNDS = int(os.environ.get("FPSCALE_BENCH_ROUNDS", "5"))
MEDIANS: dict[str, float] = {}


def scaled(n: int) -> int:
    return max(1000, int(n * SCALE))


def record(benchmark, name: str) -> None:
    """Remember a finished benchmark's median under name."""
    MEDIANS[name] = benchmark.stats.stats.median


def ratio(fast: str, slow: str) -> float:
    """Throughput of `fast` relative to `slow` (> 1 means fast is faster)."""
    if fast not in MEDIANS or slow not in MEDIANS:
        pytest.skip(f"needs both {fast} and {slow} in this run")
    return MEDIANS[slow] / MEDIANS[fast]


@pytest.fixture(scope="session")
def float_data():
    rng = np.random.default_rng(0)
    n, d, q = scaled(1_000_000), 128, 2000
    g = rng.standard_normal((n, d), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    p = rng.standard_normal((q, d), dtype=np.float32)
    return np.arange(n), g, p


@pytest.fixture(scope="session")
def binary_data():
    rng = np.random.default_rng(1)
    n, q = scaled(1_000_000), 2000
    return (np.arange(n), rng.integers(0, 256, (n, 32), dtype=np.uint8),
            rng.integers(0, 256, (q, 32), dtype=np.uint8))


def pytest_terminal_summary(terminalreporter):
    pairs = [("numba-flat", "faiss-Flat"), ("numba-hamming", "faiss-BFlat"),
             ("1to1-mcc", "1to1-paired-count"), ("ladder-vectors", "ladder-vectors-search"),
             ("ladder-codes", "ladder-codes-search"),
             ("ladder-codes-deep-scored", "ladder-codes-deep"),
             ("code-bits-screened", "code-bits-float64"),
             ("projection-tiles", "projection-eight-rows"), ("code-bits-tiled", "code-bits-screened"),
             ("records-national-vectors", "records-national-codes")]
    lines = []
    for a, b in pairs:
        if a in MEDIANS and b in MEDIANS:
            lines.append(f"  {a} / {b} throughput: {MEDIANS[b] / MEDIANS[a]:.2f}x")
    for name, unit, count in (("synth-plain-impressions", "impressions/s (plain)", "synth_n"),
                              ("synth-rolled-impressions", "impressions/s (rolled)", "synth_n"),
                              ("synth-rolled-national", "impressions/s (rolled, 256-d, ITQ)", "synth_n"),
                              ("synth-legacy-flat-national", "impressions/s (legacy flat, 256-d, ITQ)", "synth_n"),
                              ("minutiae-1to1", "comparisons/s", "minutiae_n"),
                              ("1to1-paired-count", "comparisons/s (plain vs rolled)", "1to1_n"),
                              ("1to1-mcc", "comparisons/s (plain vs rolled)", "1to1_n"),
                              ("1to1-mcc-prepared", "comparisons/s (cylinders stored)", "1to1_n")):
        if name in MEDIANS and count in MEDIANS:
            lines.append(f"  {name}: {MEDIANS[count] / MEDIANS[name]:,.0f} {unit}")
    base = [w for w in (1,) if f"cluster-build-{w}" in MEDIANS]
    for w in (2, 4, 8, 16):
        if base and f"cluster-build-{w}" in MEDIANS:
            lines.append(f"  cluster, {w} workers / 1 worker: build {MEDIANS['cluster-build-1'] / MEDIANS[f'cluster-build-{w}']:.2f}x, "
                         f"search {MEDIANS['cluster-search-1'] / MEDIANS[f'cluster-search-{w}']:.2f}x")
    if lines:
        terminalreporter.write_sep("-", "fpscale ratios (same session, same data, same threads)")
        for line in lines:
            terminalreporter.write_line(line)
