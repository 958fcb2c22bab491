"""Search backends at fixed sizes: numba exact against faiss, side by side.

Issue targets (1M gallery, 128-d float / 256-bit binary, 2,000 probes,
L = 20, same threads): numba float exact >= 0.9x faiss IndexFlatIP,
numba binary exact >= 1.0x faiss IndexBinaryFlat.
"""

import numba
import pytest

from fpscale.matcher import make_backend

from .conftest import MEDIANS, ROUNDS, ratio, record

L = 20
THREADS = numba.config.NUMBA_NUM_THREADS


def _built(spec, d, ids, data, train=None, params=""):
    b = make_backend(spec, d, threads=THREADS, seed=0)
    if b.needs_training:
        b.train(train if train is not None else data[:50_000])
    b.add(ids, data)
    b.set_search_params(params)
    return b


@pytest.mark.parametrize("spec", ["numba-flat", "faiss:Flat"])
def test_float_exact_search(benchmark, float_data, spec):
    ids, g, p = float_data
    b = _built(spec, g.shape[1], ids, g)
    b.search(p[:4], L)  # warm-up (compile or load kernels)
    benchmark.pedantic(b.search, args=(p, L), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, spec.replace(":", "-"))


@pytest.mark.parametrize("spec", ["numba-hamming", "faiss:BFlat"])
def test_binary_exact_search(benchmark, binary_data, spec):
    ids, g, p = binary_data
    b = _built(spec, 256, ids, g)
    b.search(p[:4], L)
    benchmark.pedantic(b.search, args=(p, L), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, spec.replace(":", "-"))


@pytest.mark.parametrize("spec,params", [("faiss:IVF1024,Flat", "nprobe=16"),
                                         ("faiss:IVF1024,PQ32", "nprobe=16"),
                                         ("faiss:HNSW32", "efSearch=64")])
def test_approximate_search(benchmark, float_data, spec, params):
    ids, g, p = float_data
    b = _built(spec, g.shape[1], ids, g, params=params)
    benchmark.pedantic(b.search, args=(p, L), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("spec", ["numba-flat", "faiss:IVF1024,Flat"])
def test_build(benchmark, float_data, spec):
    ids, g, _ = float_data
    n = min(len(ids), 200_000)
    benchmark.pedantic(lambda: _built(spec, g.shape[1], ids[:n], g[:n], train=g[:50_000]),
                       rounds=2, warmup_rounds=0)


def test_ratio_numba_float_vs_faiss_flat():
    r = ratio("numba-flat", "faiss-Flat")
    print(f"numba-flat / faiss-Flat throughput {r:.2f}x")
    assert r >= 0.9, f"numba float exact at {r:.2f}x faiss IndexFlatIP (target >= 0.9x)"


def test_ratio_numba_hamming_vs_faiss_bflat():
    r = ratio("numba-hamming", "faiss-BFlat")
    print(f"numba-hamming / faiss-BFlat throughput {r:.2f}x")
    assert r >= 1.0, f"numba binary exact at {r:.2f}x faiss IndexBinaryFlat (target >= 1.0x)"
