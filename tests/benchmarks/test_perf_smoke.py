"""CI performance smoke check: ratios only, so a slow or busy machine moves
both sides together. Run by `make perf-smoke` (and .ci/run) at a small size.

The floor (FPSCALE_SMOKE_FLOOR, default 0.5) sits well under the issue
targets (0.9x and 1.0x at 1M) so that noise does not fail it, and well over
what a kernel that lost its blocking or its vectorisation reaches (about
0.1-0.4x), so it cannot pass by accident: set FPSCALE_SLOW_KERNEL=1 to
see it fail on a deliberately slowed numba kernel.
"""

import os
import time

import numba
import numpy as np
import pytest

from fpscale.matcher import make_backend

FLOOR = float(os.environ.get("FPSCALE_SMOKE_FLOOR", "0.5"))
N = int(os.environ.get("FPSCALE_SMOKE_N", "200000"))


def _best(b, p, k=20, rounds=5):
    b.search(p[:2], k)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        b.search(p, k)
        times.append(time.perf_counter() - t)
    return min(times)


def _slow(backend, g):
    # a deliberately slowed kernel: a plain numba double loop, no blocking
    from numba import njit, prange

    @njit(parallel=True)
    def scan(p, g, k):
        out = np.empty((p.shape[0], k), dtype=np.float32)
        for q in prange(p.shape[0]):
            s = np.empty(g.shape[0], dtype=np.float32)
            for j in range(g.shape[0]):
                acc = 0.0
                for d in range(g.shape[1]):
                    acc += p[q, d] * g[j, d]
                s[j] = acc
            out[q] = np.sort(s)[::-1][:k]
        return out

    backend.search = lambda p, k: scan(p, g, k)
    return backend


@pytest.mark.parametrize("pair", [("numba-flat", "faiss:Flat", 128), ("numba-hamming", "faiss:BFlat", 256)],
                         ids=["float", "binary"])
def test_ratio_smoke(pair):
    ours, theirs, d = pair
    rng = np.random.default_rng(0)
    threads = numba.config.NUMBA_NUM_THREADS
    if ours == "numba-flat":
        g = rng.standard_normal((N, d), dtype=np.float32)
        p = rng.standard_normal((500, d), dtype=np.float32)
    else:
        g = rng.integers(0, 256, (N, d // 8), dtype=np.uint8)
        p = rng.integers(0, 256, (500, d // 8), dtype=np.uint8)
    a = make_backend(ours, d, threads=threads)
    b = make_backend(theirs, d, threads=threads)
    for x in (a, b):
        x.add(np.arange(N), g)
    if os.environ.get("FPSCALE_SLOW_KERNEL") and ours == "numba-flat":
        a = _slow(a, g)
    ta, tb = _best(a, p), _best(b, p)
    ratio = tb / ta
    print(f"{ours} / {theirs}: {ratio:.2f}x (floor {FLOOR})")
    assert ratio >= FLOOR, f"{ours} runs at {ratio:.2f}x {theirs}; the smoke floor is {FLOOR}x"
