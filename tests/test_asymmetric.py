"""Asymmetric scores of binary codes and the re-ranking of a streamed
search's deep lists (search.rerank_candidates): the scores against a plain
numpy reference, bit for bit; the heap that carries them; the scan's lists
the same whatever the chunking or sharding; a run's refined lists the
best of its re-ranked ones."""

import numpy as np
import pytest
from numba import njit

from fpscale.bench.measure.code_ladder import CodeLadderScan, hamming_scores
from fpscale.bench.measure.ladder import LadderScan
from fpscale.bench.scenario import ScenarioError, scenario_from_dict
from fpscale.matcher.asymmetric import (code_projections, column_scores, paired_scores,
                                        score_tables)
from fpscale.matcher.topk import empty_lists, heap_push
from fpscale.synth.embedding import projections
from fpscale.synth.population import gallery_chunk, gallery_records, submission_chunk


def _reference_scores(y: np.ndarray, codes: np.ndarray) -> np.ndarray:
    # plain numpy, in the kernels' order: each byte's eight signed terms in
    # bit order, then the bytes in order, every addition in float32
    n, nbytes = codes.shape
    bits = np.unpackbits(codes, axis=1, bitorder="little").astype(bool)
    signed = np.where(bits, y, -y).astype(np.float32)
    total = np.zeros(n, dtype=np.float32)
    for k in range(nbytes):
        byte = np.zeros(n, dtype=np.float32)
        for b in range(8):
            byte = byte + signed[:, 8 * k + b]
        total = total + byte
    return total


def test_asymmetric_scores_are_the_signed_sums_of_the_projection():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((6, 128)).astype(np.float32)
    codes = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    tables = score_tables(y)
    probe = np.repeat(np.arange(6), 50 // 6 + 1)[:50].astype(np.int64)
    got = paired_scores(tables, probe, codes)
    want = _reference_scores(y[probe], codes)
    np.testing.assert_array_equal(got, want)
    exact = (np.where(np.unpackbits(codes, axis=1, bitorder="little"), 1.0, -1.0)
             * y[probe].astype(np.float64)).sum(1)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-4)


def test_codes_scored_side_by_side_get_the_same_bits():
    # column_scores' lanes, and the codes past the last full lane one by one
    rng = np.random.default_rng(6)
    y = rng.standard_normal((1, 128)).astype(np.float32)
    codes = rng.integers(0, 256, (29, 16), dtype=np.uint8)
    planes = np.ascontiguousarray(codes.view(np.uint64).T)
    cols = rng.permutation(29)[:21].astype(np.int64)
    out = np.full(21, np.nan, dtype=np.float32)
    column_scores(score_tables(y)[0], planes, cols, out)
    np.testing.assert_array_equal(out, _reference_scores(np.repeat(y, 21, axis=0), codes[cols]))


def test_a_search_scores_its_own_code_highest():
    # the code of a vector is the sign of its projection, so its own code
    # takes every term positive: no other code scores above it
    spec = scenario_from_dict({"name": "t", "population": {"gallery_size": 200, "n_submissions": 30,
                                                           "dim": 64, "bits": 128}}).population
    subs = submission_chunk(spec, 0, 30)
    w = projections(spec.dim, spec.bits, spec.code)[2]
    F = len(spec.search_fingers)
    y = code_projections(subs.vectors, w, F)
    want = np.concatenate([subs.vectors[:, f * spec.dim:(f + 1) * spec.dim].astype(np.float64) @ w
                           for f in range(F)], axis=1)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    tables = score_tables(y)
    own = paired_scores(tables, np.arange(30), subs.codes)
    np.testing.assert_allclose(own, np.abs(y).sum(1), rtol=1e-5)
    gallery = gallery_chunk(spec, 0, 200).codes
    for q in range(30):
        others = paired_scores(tables, np.full(200, q), gallery)
        assert (others <= own[q] + 1e-4).all()


@njit(cache=True)
def _push_all(hs, hi, hc, s, i, c):
    for t in range(s.shape[0]):
        heap_push(hs, hi, s[t], i[t], hc, c[t])


@njit(cache=True)
def _push_plain(hs, hi, s, i):
    for t in range(s.shape[0]):
        heap_push(hs, hi, s[t], i[t])


def test_a_carried_value_stays_with_its_entry():
    rng = np.random.default_rng(3)
    n = 5000
    s = rng.integers(0, 40, n).astype(np.float32)  # many ties
    i = rng.permutation(n).astype(np.int64)
    c = (i * 0.5).astype(np.float32)
    hs, hi = empty_lists(1, 64)
    hc = np.full(64, np.nan, dtype=np.float32)
    _push_all(hs[0], hi[0], hc, s, i, c)
    ps, pi = empty_lists(1, 64)
    _push_plain(ps[0], pi[0], s, i)
    np.testing.assert_array_equal(hs, ps)
    np.testing.assert_array_equal(hi, pi)
    np.testing.assert_array_equal(hc, (hi[0] * 0.5).astype(np.float32))


@pytest.fixture(scope="module")
def coded():
    spec = scenario_from_dict({"name": "t", "population": {
        "gallery_size": 3000, "n_submissions": 40, "dim": 64, "bits": 128,
        "search_fingers": [2, 7]}}).population
    subs = submission_chunk(spec, 0, 40)
    gallery = gallery_chunk(spec, 0, 3000)
    y = code_projections(subs.vectors, projections(spec.dim, spec.bits, spec.code)[2], 2)
    return spec, subs, gallery, y


def _scan(coded, bounds, projected=True):
    # a scan keeping every search's top 300 of the gallery, fed the chunks
    # between consecutive bounds
    spec, subs, gallery, y = coded
    mate = np.full(40, -1, dtype=np.int64)
    scan = CodeLadderScan(np.array([1000, 3000]), subs.codes, mate,
                          np.full(40, -np.inf, np.float32), 0, 300, y if projected else None)
    for a, b in zip(bounds[:-1], bounds[1:]):
        scan.add(a, gallery.codes[a:b])
    return scan


def test_the_scan_carries_each_listed_records_score_whatever_the_chunks(coded):
    spec, subs, gallery, y = coded
    one = _scan(coded, [0, 3000])
    plain = _scan(coded, [0, 3000], projected=False)
    # the Hamming lists are the same with or without the scores
    np.testing.assert_array_equal(one.top_list()[0], plain.top_list()[0])
    np.testing.assert_array_equal(one.top_list()[1], plain.top_list()[1])
    q = np.repeat(np.arange(40), 300)
    listed = one.whole_i.reshape(-1)
    want = paired_scores(score_tables(y), q, gallery.codes[listed])
    np.testing.assert_array_equal(one.whole_c.reshape(-1), want)
    # chunks of any size, and shards merged, give the same state
    many = _scan(coded, [0, 7, 1000, 1001, 2048, 3000])
    for k, v in one.export_state().items():
        np.testing.assert_array_equal(many.export_state()[k], v)
    merged = LadderScan.merge_states([_scan(coded, [0, 1200]).export_state(),
                                      _scan(coded, [1200, 3000]).export_state()])
    mine = one.export_state()
    order = np.lexsort((mine["whole_ids"], -mine["whole_scores"].astype(np.float64)), axis=1)
    for k in ("whole_ids", "whole_scores", "whole_asym"):
        np.testing.assert_array_equal(merged[k], np.take_along_axis(mine[k], order, axis=1))


def test_reranked_lists_are_the_best_by_asymmetric_score(coded):
    spec, subs, gallery, y = coded
    scan = _scan(coded, [0, 3000])
    ids, scores = scan.reranked(50)
    full = paired_scores(score_tables(y), np.repeat(np.arange(40), 3000),
                         np.tile(gallery.codes, (40, 1))).reshape(40, 3000)
    for q in range(40):
        pool = scan.whole_i[q]
        want = sorted(pool, key=lambda g: (-full[q, g], g))[:50]
        assert ids[q].tolist() == want
        np.testing.assert_array_equal(scores[q], full[q, want])
    with pytest.raises(ValueError, match="no asymmetric"):
        _scan(coded, [0, 3000], projected=False).reranked(5)


def test_rerank_settings_that_cannot_work_are_refused(tiny):
    base = dict(search__backends=[{"name": "numba-hamming"}], search__streamed=True,
                search__rescore=True, projection__scores="codes")
    for over, why in ((dict(search__rerank_candidates=100), "needs search.refine_candidates"),
                      (dict(search__refine_candidates=50, search__rerank_candidates=50),
                       r"more than refine_candidates \(50\)"),
                      (dict(search__refine_candidates=50, search__rerank_candidates=100_001),
                       "rerank_candidates"),
                      (dict(search__streamed=False, search__refine_candidates=50,
                            search__rerank_candidates=100), "needs search.streamed")):
        with pytest.raises(ScenarioError, match=why):
            scenario_from_dict(tiny(**{**base, **over}))
    sc = scenario_from_dict(tiny(**base, search__refine_candidates=50, search__rerank_candidates=200))
    assert (sc.search.searched, sc.search.refine_candidates) == (200, 50)
    assert "rerank_candidates" not in scenario_from_dict(tiny()).to_dict()["search"]


def test_a_reranked_run_refines_the_best_of_its_deep_lists(tiny, tmp_path):
    # numba-hamming's top 400 (the whole gallery) re-ranked by asymmetric
    # scores to 60, those refined to the re-scored 10: the run's re-scored
    # candidates are the refinement of the reference re-ranking
    from fpscale.bench.run.refine import refine_segment
    from fpscale.bench.run.steps import run_scenario
    from fpscale.bench.store.files import read_npz
    d = tiny(population__gallery_size=400, population__n_submissions=120,
             search__backends=[{"name": "numba-hamming"}], search__streamed=True,
             search__rescore=True, search__rescore_candidates=3, search__refine_candidates=60,
             search__rerank_candidates=400, projection__scores="codes",
             projection__ladder=[40, 100, 400], metrics__rank=3)
    sc = scenario_from_dict(d)
    summary = run_scenario(sc, tmp_path / "run", progress=False)
    spec = sc.population
    subs = submission_chunk(spec, 0, spec.n_submissions)
    gallery = gallery_chunk(spec, 0, spec.gallery_size)
    y = code_projections(subs.vectors, projections(spec.dim, spec.bits, spec.code)[2],
                         len(spec.search_fingers))
    Q, N = spec.n_submissions, spec.gallery_size
    full = paired_scores(score_tables(y), np.repeat(np.arange(Q), N),
                         np.tile(gallery.codes, (Q, 1))).reshape(Q, N)
    top60 = np.array([sorted(range(N), key=lambda g: (-full[q, g], g))[:60] for q in range(Q)])
    want, _, _ = refine_segment(spec, subs.vectors, top60.astype(np.int64), 10)
    got = read_npz(tmp_path / "run" / "searches_numba-hamming+minutiae.npz")
    row = {b.key: b for b in summary.backends}["numba-hamming+minutiae"]
    r = row.timings.refine
    assert (r.reranked_from, r.searched, r.kept, r.pairs) == (400, 60, 10, Q * 60)
    # the re-scored list is the refined list's best 3, re-ordered by the matcher
    assert all(set(got["cand_ids"][q]) == set(want[q, :3]) for q in range(Q))
    # the codes' own row keeps its Hamming list
    codes_row = read_npz(tmp_path / "run" / "searches_numba-hamming.npz")["cand_ids"]
    want_h = [sorted(range(N), key=lambda g: (-hamming_scores(subs.codes[[q]], gallery.codes[[g]])[0],
                                              g))[:10] for q in range(3)]
    assert codes_row[:3].tolist() == want_h
    assert "re-ranked by asymmetric scores" in (tmp_path / "run" / "report.md").read_text()
    assert gallery_records(spec, np.array([5])).codes.shape == (1, spec.record_bits // 8)


def test_the_plan_counts_the_carried_scores_the_tables_and_the_buffers(tiny):
    from fpscale.bench.run.gallery import scan_lists
    from fpscale.bench.run.planner import deep_list_bytes, plan
    from fpscale.matcher.deep_lists import buffer_length
    base = dict(search__backends=[{"name": "numba-hamming"}], search__streamed=True,
                search__rescore=True, search__refine_candidates=50, projection__scores="codes")
    refined = scenario_from_dict(tiny(**base, search__rerank_candidates=0))
    reranked = scenario_from_dict(tiny(**base, search__rerank_candidates=200))
    Q, code_bytes = 240, reranked.population.record_bits // 8
    # the refined search's deep list of 50 has its buffer and counts by
    # score, no asymmetric scores
    kept = scan_lists(refined.search, refined.projection)
    counts = Q * (code_bytes * 8 + 4) * 8
    assert deep_list_bytes(refined, kept) == Q * buffer_length(50) * 12 + counts
    B = buffer_length(200)
    extra = deep_list_bytes(reranked, scan_lists(reranked.search, reranked.projection))
    assert extra == Q * B * 12 + counts + Q * 4 * (200 + B) + Q * code_bytes * 256 * 4
    # and the lists themselves are deeper: 150 more entries of 12 bytes a
    # search, kept by the scan and read back from it
    assert plan(reranked).submissions - plan(refined).submissions >= \
        extra - deep_list_bytes(refined, kept) + 2 * Q * 150 * 12
