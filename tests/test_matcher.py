import math
from fractions import Fraction

import numpy as np
import pytest
from faiss.contrib.evaluation import check_ref_knn_with_draws
from hypothesis import given
from hypothesis import strategies as st

from fpscale.matcher import make_backend
from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.exact import (gathered_inner_products, inner_products, paired_inner_products,
                                  popcount64)
from fpscale.matcher.sharded import ShardedIndex
from fpscale.matcher.topk import merge_lists


def _numpy_topk(g, p, k):
    # plain-numpy reference: full score matrix, ties to the lower id
    s = p.astype(np.float64) @ g.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(len(g)), s.shape), -s), axis=1)[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


@given(n=st.integers(1, 300), q=st.integers(1, 40), d=st.integers(1, 48),
       k=st.integers(1, 40), dup=st.booleans(), seed=st.integers(0, 1000))
def test_numba_flat_equals_faiss_flat_and_numpy(n, q, d, k, dup, seed):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, d)).astype(np.float32)
    if dup and n > 2:
        g[n // 2:] = g[: n - n // 2]  # duplicate vectors: exact ties
    p = rng.standard_normal((q, d)).astype(np.float32)
    ids = np.arange(n)
    nb = make_backend("numba-flat", d)
    fb = make_backend("faiss:Flat", d)
    for b in (nb, fb):
        b.add(ids, g)
    ni, ns = nb.search(p, k)
    fi, fs = fb.search(p, k)
    kk = min(k, n)
    assert np.all(ni[:, kk:] == -1) and np.all(np.isneginf(ns[:, kk:]))
    # faiss contrib's tie-aware comparison is the oracle
    check_ref_knn_with_draws(fs[:, :kk], fi[:, :kk], ns[:, :kk], ni[:, :kk], rtol=1e-4, atol=1e-4)
    ri, rs = _numpy_topk(g, p, kk)
    assert np.allclose(ns[:, :kk], rs, rtol=1e-4, atol=1e-4)


@given(n=st.integers(1, 300), q=st.integers(1, 30), words=st.integers(1, 5),
       k=st.integers(1, 30), seed=st.integers(0, 1000))
def test_numba_hamming_equals_faiss_bflat(n, q, words, k, seed):
    rng = np.random.default_rng(seed)
    bits = 64 * words
    g = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    p = rng.integers(0, 256, (q, bits // 8), dtype=np.uint8)
    nb = make_backend("numba-hamming", bits)
    fb = make_backend("faiss:BFlat", bits)
    for b in (nb, fb):
        b.add(np.arange(n), g)
    ni, ns = nb.search(p, k)
    fi, fs = fb.search(p, k)
    kk = min(k, n)
    check_ref_knn_with_draws(fs[:, :kk], fi[:, :kk], ns[:, :kk], ni[:, :kk])
    ref = bits - np.unpackbits(p[:, None, :] ^ g[None, :, :], axis=2).sum(2)
    ri, rs = _numpy_topk_int(ref, kk)
    assert np.array_equal(ns[:, :kk], rs) and np.array_equal(ni[:, :kk], ri)


@pytest.mark.parametrize("listed", [False, True])
@pytest.mark.parametrize("k", [1, 10])
def test_numba_hamming_skips_only_tiles_that_cannot_enter(listed, k):
    # 15 tiles of 2,048 codes: after the first, most tiles hold no code that
    # can enter a full list and are skipped whole; 64-bit codes near the
    # probes make ties at the list's last score common, and shuffled ids
    # (listed) put lower ids later in the scan, where a tie must still enter
    rng = np.random.default_rng(k)
    n, q = 30_000, 12
    p = rng.integers(0, 256, (q, 8), dtype=np.uint8)
    flips = rng.random((n, 64)) < 0.3
    g = np.packbits(np.unpackbits(p[rng.integers(0, q, n)], axis=1) ^ flips, axis=1)
    ids = rng.permutation(n).astype(np.int64) * 3 if listed else np.arange(n, dtype=np.int64)
    b = make_backend("numba-hamming", 64)
    b.add(ids, g)
    ni, ns = b.search(p, k)
    s = 64 - np.unpackbits(p[:, None, :] ^ g[None, :, :], axis=2).sum(2)
    order = np.lexsort((np.broadcast_to(ids, s.shape), -s), axis=1)[:, :k]
    assert np.array_equal(ni, ids[order])
    assert np.array_equal(ns, np.take_along_axis(s, order, axis=1).astype(np.float32))


def _numpy_topk_int(s, k):
    order = np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k]
    return order, np.take_along_axis(s, order, axis=1).astype(np.float32)


def test_popcount():
    for x in (0, 1, 0xFF, (1 << 64) - 1, 0x8000000000000001):
        assert popcount64(np.uint64(x)) == bin(x).count("1")


def test_results_do_not_depend_on_threads_or_chunking():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((5000, 32)).astype(np.float32)
    p = rng.standard_normal((300, 32)).astype(np.float32)
    one = make_backend("numba-flat", 32, threads=1)
    one.add(np.arange(5000), g)
    two = make_backend("numba-flat", 32, threads=2)
    for a in range(0, 5000, 777):
        two.add(np.arange(a, min(5000, a + 777)), g[a:a + 777])
    i1, s1 = one.search(p, 25)
    i2, s2 = two.search(p, 25)
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)


@pytest.mark.parametrize("spec,d", [("numba-flat", 16), ("faiss:Flat", 16), ("numba-hamming", 128),
                                    ("faiss:BFlat", 128)])
def test_sharded_search_equals_single_index(spec, d):
    # exact ties everywhere (every record twice, Hamming scores are integers):
    # lists must still come out the same, ties to the lower id
    rng = np.random.default_rng(2)
    n = 1000
    if spec in ("numba-hamming", "faiss:BFlat"):
        g = rng.integers(0, 256, (n, d // 8), dtype=np.uint8)
        g[500:] = g[:500]  # ties across shards
        p = rng.integers(0, 256, (50, d // 8), dtype=np.uint8)
    else:
        g = rng.standard_normal((n, d)).astype(np.float32)
        g[500:] = g[:500]
        p = rng.standard_normal((50, d)).astype(np.float32)
    single = make_backend(spec, d)
    single.add(np.arange(n), g)
    sharded = ShardedIndex(lambda: make_backend(spec, d), shard_size=137)
    for a in range(0, n, 300):
        sharded.add(np.arange(a, min(n, a + 300)), g[a:a + 300])
    assert len(sharded.shards) == -(-n // 137)
    si, ss = single.search(p, 30)
    hi, hs = sharded.search(p, 30)
    assert np.array_equal(si, hi) and np.array_equal(ss, hs)
    ties = (ss[:, 1:] == ss[:, :-1])
    assert ties.any() and np.all(si[:, 1:][ties] > si[:, :-1][ties])


def test_merge_pads_when_fewer_than_k():
    a = (np.array([[3, -1]]), np.array([[0.5, -np.inf]], dtype=np.float32))
    b = (np.array([[1, -1]]), np.array([[0.5, -np.inf]], dtype=np.float32))
    ids, scores = merge_lists([a, b], 3)
    assert ids.tolist() == [[1, 3, -1]] and scores[0, 2] == -np.inf


def test_approximate_indexes_report_reasonable_recall():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((50, 32))
    g = (centers[rng.integers(0, 50, 20000)] + 0.3 * rng.standard_normal((20000, 32))).astype(np.float32)
    p = (g[rng.integers(0, 20000, 200)] + 0.05 * rng.standard_normal((200, 32))).astype(np.float32)
    exact = make_backend("numba-flat", 32)
    exact.add(np.arange(20000), g)
    ei, _ = exact.search(p, 10)
    for spec, params in (("faiss:IVF64,Flat", "nprobe=16"), ("faiss:HNSW32", "efSearch=64")):
        b = make_backend(spec, 32, seed=1)
        b.train(g[:5000])
        b.add(np.arange(20000), g)
        b.set_search_params(params)
        ai, _ = b.search(p, 10)
        recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ai, ei)])
        assert recall > 0.8, (spec, recall)
        assert b.nbytes() > 0


@pytest.mark.parametrize("call,needle", [
    (lambda b: b.add(np.arange(3), np.zeros((3, 8), dtype=np.float64)), "dtype float32"),
    (lambda b: b.add(np.arange(3), np.zeros((3, 9), dtype=np.float32)), "dimension 9"),
    (lambda b: b.add(np.arange(3), np.full((3, 8), np.nan, dtype=np.float32)), "non-finite"),
    (lambda b: b.search(np.zeros((2, 8), dtype=np.float32), 5), "gallery is empty"),
    (lambda b: b.search(np.zeros((2, 8), dtype=np.float32), 0), "L \\(candidate list length\\)"),
    (lambda b: b.add(np.arange(2), np.zeros((3, 8), dtype=np.float32)), "ids must have shape"),
])
def test_bad_input_names_the_argument(call, needle):
    b = make_backend("numba-flat", 8)
    with pytest.raises(MatcherInputError, match=needle):
        call(b)


def test_bad_backend_specs():
    with pytest.raises(MatcherInputError, match="unknown backend"):
        make_backend("annoy", 8)
    with pytest.raises(MatcherInputError, match="faiss cannot build index"):
        make_backend("faiss:IVFxyz", 8)
    with pytest.raises(MatcherInputError, match="multiple of 64"):
        make_backend("numba-hamming", 100)
    b = make_backend("numba-hamming", 128)
    with pytest.raises(MatcherInputError, match="uint8"):
        b.add(np.arange(2), np.zeros((2, 16), dtype=np.int8))


def test_memory_estimates_close_to_actual():
    from fpscale.matcher.faiss_index import factory_memory_estimate
    rng = np.random.default_rng(0)
    g = rng.standard_normal((20000, 64)).astype(np.float32)
    for spec in ("faiss:Flat", "faiss:IVF64,Flat", "faiss:IVF64,PQ16", "faiss:HNSW16"):
        b = make_backend(spec, 64, seed=0)
        b.train(g[:5000])
        b.add(np.arange(20000), g)
        est = factory_memory_estimate(spec[6:], 20000, 64)
        assert 0.75 <= est / b.nbytes() <= 1.33, (spec, est, b.nbytes())
    nb = make_backend("numba-flat", 64)
    nb.add(np.arange(20000), g)
    assert nb.memory_estimate(20000, 64) == nb.nbytes()


@pytest.mark.parametrize("d", [16, 64, 130])
def test_inner_products_match_numpy_and_do_not_depend_on_position(d):
    # BLAS sgemm may round one pair differently by where it sits in a tile;
    # numba-flat's kernel must give a pair the same bits anywhere
    rng = np.random.default_rng(d)
    g = rng.standard_normal((1001, d)).astype(np.float32)
    g[500:1000] = g[:500]
    p = rng.standard_normal((51, d)).astype(np.float32)
    s = inner_products(p, g)
    np.testing.assert_allclose(s, p.astype(np.float64) @ g.T.astype(np.float64), rtol=0, atol=1e-4)
    assert np.array_equal(s[:, :500], s[:, 500:1000])           # same rows, other offsets
    assert np.array_equal(inner_products(p[3:], g[7:]), s[3:, 7:])  # other tile edges
    assert np.array_equal(inner_products(p[5:6], g[9:10]), s[5:6, 9:10])
    assert np.array_equal(paired_inner_products(p, g[:51]), np.diag(s[:, :51]))
    ai, bi = rng.integers(0, 51, 300), rng.integers(0, 1001, 300)
    assert np.array_equal(gathered_inner_products(p, ai, g, bi), s[ai, bi])


def _fma32(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    # a * b + c rounded once to float32 (nearest, ties to even), exactly:
    # numpy has no fma, and float64 arithmetic would round twice
    x = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if x == 0:
        return np.float32(0.0)
    m, e = abs(x), 0
    while m >= 2 ** 24:
        m, e = m / 2, e + 1
    while m < 2 ** 23:
        m, e = m * 2, e - 1
    n = math.floor(m)
    if m - n > Fraction(1, 2) or (m - n == Fraction(1, 2) and n % 2):
        n += 1
    return np.float32(math.copysign(math.ldexp(n, e), x))


def _lane_order_dot(x: np.ndarray, y: np.ndarray) -> np.float32:
    # numba-flat's documented order: lane l sums x[k] y[k] for k = l, l + 8,
    # ... by fused multiply-adds; the upper half of the lanes is added to the
    # lower half until one is left; the last d % 8 products follow in order
    lanes = [np.float32(0.0)] * 8
    full = len(x) - len(x) % 8
    for k in range(full):
        lanes[k % 8] = _fma32(x[k], y[k], lanes[k % 8])
    while len(lanes) > 1:
        h = len(lanes) // 2
        lanes = [np.float32(lanes[i] + lanes[i + h]) for i in range(h)]
    s = lanes[0]
    for k in range(full, len(x)):
        s = _fma32(x[k], y[k], s)
    return s


@pytest.mark.parametrize("d", [1, 7, 8, 29, 64])
def test_inner_products_are_summed_in_the_documented_order(d):
    # the same bits on every CPU: the order is written in the kernel, not
    # left to the compiler's vectoriser (which orders sums by target)
    rng = np.random.default_rng(40 + d)
    g = rng.standard_normal((9, d)).astype(np.float32)
    p = rng.standard_normal((6, d)).astype(np.float32)
    want = np.array([[_lane_order_dot(a, b) for b in g] for a in p], dtype=np.float32)
    assert np.array_equal(inner_products(p, g).view(np.uint32), want.view(np.uint32))
    # the sums round: a plain sequential float32 sum differs somewhere
    seq = np.array([[np.float32(sum((np.float32(a[k] * b[k]) for k in range(d)), np.float32(0)))
                     for b in g] for a in p])
    assert d < 8 or not np.array_equal(seq, want)


def test_numba_hamming_keeps_no_ids_for_consecutive_records_and_searches_alike():
    # fpscale adds gallery chunks of consecutive ids: those are kept as their
    # first id alone; any other ids are kept as given, and both search alike
    rng = np.random.default_rng(4)
    g = rng.integers(0, 256, (900, 16), dtype=np.uint8)
    p = rng.integers(0, 256, (13, 16), dtype=np.uint8)
    runs = make_backend("numba-hamming", 128)
    runs.add(np.arange(0, 400), g[:400])
    runs.add(np.arange(400, 900), g[400:])
    assert runs.nbytes() == g.nbytes
    shuffled = rng.permutation(900)
    listed = make_backend("numba-hamming", 128)
    listed.add(shuffled, g)  # record j has id shuffled[j]
    assert listed.nbytes() == g.nbytes + 900 * 8
    ri, rs = runs.search(p, 25)
    li, ls = listed.search(p, 25)
    ref = 128 - np.unpackbits(p[:, None, :] ^ g[None, :, :], axis=2).sum(2)
    assert np.array_equal(rs, ls)
    for q in range(13):
        # the same records, named by each index's ids
        assert np.array_equal(np.sort(ref[q, ri[q]]), np.sort(ref[q, np.argsort(shuffled)[li[q]]]))
    state = runs.export_state()
    assert np.array_equal(state["ids"], np.arange(900))
    back = make_backend("numba-hamming", 128)
    back.import_state(state)
    assert back.nbytes() == g.nbytes and back.ntotal == 900
    assert all(np.array_equal(x, y) for x, y in zip(back.search(p, 25), (ri, rs)))
