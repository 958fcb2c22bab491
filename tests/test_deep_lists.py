"""Deep lists filled through a buffer (fpscale.matcher.deep_lists): after
every merge a list holds exactly the top L of everything offered, in
fpscale's order, worst entry first, carried values with their entries,
against a plain numpy reference; a heap left by heap_push fills on; a
scan's deep lists are the exact search's whatever the buffer's length."""

import numpy as np
import pytest
from numba import njit

from fpscale.bench.measure.code_ladder import CodeLadderScan, hamming_scores
from fpscale.matcher.asymmetric import paired_scores, score_tables
from fpscale.matcher.deep_lists import admit, buffer_length, merge_buffer, merge_buffers
from fpscale.matcher.topk import empty_lists, heap_push

BITS = 40


def _reference(scores: np.ndarray, ids: np.ndarray, L: int) -> set:
    # the top L by (higher score, lower id), by a full sort
    order = np.lexsort((ids, -scores.astype(np.float64)))[:L]
    return set(zip(scores[order].tolist(), ids[order].tolist()))


def _check(hs, hi, hc, scores, ids, L):
    held = hi >= 0
    want = _reference(scores, ids, L)
    assert set(zip(hs[held].tolist(), hi[held].tolist())) == want
    assert held.sum() == min(L, len(ids))
    assert not np.isfinite(hs[~held]).any() and (hi[~held] == -1).all()
    # the worst entry first: padding, else the lowest score and, among
    # those, the highest id
    if held.all():
        worst = min(want, key=lambda e: (e[0], -e[1]))
        assert (hs[0], hi[0]) == worst
    else:
        assert hi[0] == -1
    np.testing.assert_array_equal(hc[held], (hi[held] * 0.25).astype(np.float32))


@pytest.mark.parametrize("L", [1, 7, 300])
def test_every_merge_leaves_the_exact_top_of_what_was_offered(L):
    rng = np.random.default_rng(L)
    n = 4000
    scores = rng.integers(0, BITS + 1, n).astype(np.float32)  # many ties
    ids = rng.permutation(10 * n)[:n].astype(np.int64)       # in no order
    hs, hi = empty_lists(1, L)
    hs, hi = hs[0], hi[0]
    hc = np.full(L, np.nan, dtype=np.float32)
    counts = np.empty(BITS + 1, dtype=np.int64)
    ties = np.empty(L + n, dtype=np.int64)
    at = 0
    while at < n:
        # buffers of every length, some shorter than the list, some longer
        m = int(rng.integers(1, 3 * L + 2))
        m = min(m, n - at)
        bs, bi = scores[at:at + m].copy(), ids[at:at + m].copy()
        bc = (bi * 0.25).astype(np.float32)
        thr, above = merge_buffer((hs, hi, hc), (bs, bi, bc), m, counts, ties)
        at += m
        _check(hs, hi, hc, scores[:at], ids[:at], L)
        # the counts are the list's by score from the threshold up, and the
        # threshold admits every score that can still enter
        held = hs[hi >= 0].astype(np.int64)
        np.testing.assert_array_equal(counts[thr:], np.bincount(held, minlength=BITS + 1)[thr:])
        assert above == (held > thr).sum() < L
        if len(held) == L:
            assert thr == held.min()


@njit(cache=True)
def _admit_all(counts, s, L):
    thr, above = 0, 0
    for x in s:
        if x >= thr:
            thr, above = admit(counts, thr, above, x, L)
    return thr, above


@pytest.mark.parametrize("L", [1, 5, 100])
def test_the_threshold_rises_past_every_score_that_l_entries_beat(L):
    rng = np.random.default_rng(L + 1)
    s = rng.integers(0, BITS + 1, 2000)
    counts = np.zeros(BITS + 1, dtype=np.int64)
    thr, above = _admit_all(counts, s, L)
    # thr: the lowest score fewer than L offered entries beat
    beaten = np.array([(s > t).sum() for t in range(BITS + 1)])
    assert thr == np.argmax(beaten < L)
    assert above == beaten[thr]
    np.testing.assert_array_equal(counts[thr:], np.bincount(s, minlength=BITS + 1)[thr:])


@njit(cache=True)
def _push_all(hs, hi, hc, s, i, c):
    for j in range(len(s)):
        heap_push(hs, hi, s[j], i[j], hc, c[j])


def test_a_heap_fills_on_through_the_buffer():
    # a checkpoint written by a heap-filled list is read back and filled on
    rng = np.random.default_rng(5)
    n, L = 3000, 200
    scores = rng.integers(0, BITS + 1, n).astype(np.float32)
    ids = rng.permutation(n).astype(np.int64)
    carried = (ids * 0.25).astype(np.float32)
    hs, hi = empty_lists(1, L)
    hs, hi = hs[0], hi[0]
    hc = np.full(L, np.nan, dtype=np.float32)
    _push_all(hs, hi, hc, scores[:1000], ids[:1000], carried[:1000])
    counts = np.empty(BITS + 1, dtype=np.int64)
    ties = np.empty(L + n, dtype=np.int64)
    merge_buffer((hs, hi, hc), (scores[1000:].copy(), ids[1000:].copy(), carried[1000:].copy()),
                 n - 1000, counts, ties)
    _check(hs, hi, hc, scores, ids, L)


def test_merging_every_search_empties_its_buffer():
    rng = np.random.default_rng(8)
    Q, L, B = 6, 50, 80
    hs, hi = empty_lists(Q, L)
    hc = np.zeros((Q, 0), dtype=np.float32)
    bs = rng.integers(0, BITS + 1, (Q, B)).astype(np.float32)
    bi = np.tile(np.arange(B, dtype=np.int64), (Q, 1))
    level = np.zeros((Q, 3), dtype=np.int64)
    level[:, 0] = [0, 1, 49, 50, 51, 80]
    counts = np.zeros((Q, BITS + 1), dtype=np.int64)
    merge_buffers((hs, hi, hc), (bs, bi, np.zeros((Q, 0), np.float32)), (counts, level), False, 2)
    assert not level[:, 0].any()
    assert level[0, 1] == 0 and not counts[0].any()  # nothing offered: nothing counted
    for q, m in enumerate([0, 1, 49, 50, 51, 80]):
        held = hi[q] >= 0
        assert set(zip(hs[q][held].tolist(), hi[q][held].tolist())) == \
            _reference(bs[q, :m], bi[q, :m], L)


@pytest.mark.parametrize("length", [buffer_length, lambda depth: 1, lambda depth: 3 * depth])
def test_a_scans_deep_lists_are_the_exact_search_whatever_the_buffer(monkeypatch, length):
    import fpscale.bench.measure.code_ladder as code_ladder
    monkeypatch.setattr(code_ladder, "buffer_length", length)
    rng = np.random.default_rng(11)
    n, Q, L = 5000, 12, 400
    gallery = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    probes = rng.integers(0, 256, (Q, 16), dtype=np.uint8)
    y = rng.standard_normal((Q, 128)).astype(np.float32)
    scans = [CodeLadderScan(np.array([n]), probes, np.full(Q, -1), np.full(Q, -np.inf, np.float32),
                            0, L, projected) for projected in (None, y)]
    for scan in scans:
        for a, b in [(0, 333), (333, 2100), (2100, 2101), (2101, n)]:
            scan.add(a, gallery[a:b])
            if a == 333:
                scan.export_state()  # a checkpoint merges the buffers midway
    ids, scores = scans[0].top_list()
    reranked, asym = scans[1].reranked(L)
    full = paired_scores(score_tables(y), np.repeat(np.arange(Q), n), np.tile(gallery, (Q, 1)))
    for q in range(Q):
        s = hamming_scores(np.repeat(probes[q:q + 1], n, axis=0), gallery)
        order = np.lexsort((np.arange(n), -s))[:L]
        np.testing.assert_array_equal(ids[q], order)
        np.testing.assert_array_equal(scores[q], s[order])
        # the scored scan lists the same records, each with its own asymmetric score
        a = full[q * n:(q + 1) * n]
        want = order[np.lexsort((order, -a[order]))]
        np.testing.assert_array_equal(reranked[q], want)
        np.testing.assert_array_equal(asym[q], a[want])
