"""The ladder scan against a plain-numpy reference, and the same state
whatever the chunking."""

import numpy as np
import pytest

from fpscale.bench.measure.code_ladder import CodeLadderScan, hamming_scores
from fpscale.bench.measure.ladder import HIST_BINS, LadderScan, block_records
from fpscale.bench.measure.projection import pooled_fmr, pooled_tail
from fpscale.matcher.exact import NumbaHamming, inner_products, thread_count


def _rung_reference(s, rungs, mate, mate_score):
    # per rung's segment of records, the mate left out: each search's highest
    # score and its count of scores above the mate's, with the mask of mates
    Q, n = s.shape
    own = mate[:, None] == np.arange(n)[None, :]
    seg = np.searchsorted(rungs, np.arange(n), side="right")
    seg_max = np.full((Q, len(rungs)), -np.inf)
    better = np.zeros((Q, len(rungs)), dtype=np.int64)
    for r in range(len(rungs)):
        cols = (seg == r)[None, :] & ~own
        seg_max[:, r] = np.where(cols, s, -np.inf).max(axis=1)
        better[:, r] = (cols & (s > mate_score[:, None])).sum(axis=1)
    return seg_max, better, own


def _reference(rungs, probes, gallery, mate, mate_score, scan):
    # every (search, record) score once, the mate left out, by numpy
    s = inner_products(probes, gallery).astype(np.float64)
    seg_max, better, own = _rung_reference(s, rungs, mate, mate_score)
    imp = s[~own]
    k = np.clip(((imp - scan.lo) / scan.width).astype(np.int64), 0,
                len(scan.hist[0]) - 1)
    return seg_max.astype(np.float32), better, np.bincount(k, minlength=len(scan.hist[0]))


def test_ladder_scan_matches_numpy_and_ignores_chunking():
    rng = np.random.default_rng(5)
    Q, n, d = 101, 1324, 2048  # blocks of 64 records: many blocks per chunk
    probes = (rng.standard_normal((Q, d)) / np.sqrt(d)).astype(np.float32)
    gallery = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    mate = np.where(np.arange(Q) % 3 == 0, rng.integers(0, n, Q), -1)
    ms = np.where(mate >= 0, inner_products(probes, gallery)[np.arange(Q), np.maximum(mate, 0)],
                  -np.inf).astype(np.float32)
    rungs = np.array([100, 700, n])
    assert block_records(d) < 100
    states = []
    for cuts in ([0, n], [0, 1, 333, 1024, 1025, n]):
        scan = LadderScan(rungs, probes, mate, ms, 4.0)
        for a, b in zip(cuts, cuts[1:]):
            scan.add(a, gallery[a:b])
        states.append(scan.state())
    for k in ("top_nonmate", "better_than_mate", "impostor_hist"):
        assert np.array_equal(states[0][k], states[1][k]), k
    seg_max, better, hist = _reference(rungs, probes, gallery, mate, ms, scan)
    assert np.array_equal(scan.seg_max, seg_max)
    assert np.array_equal(scan.seg_better, better)
    assert np.array_equal(scan.hist.sum(axis=0), hist)


def _code_reference(rungs, probes, gallery, mate, mate_score, nbins):
    # bits minus the Hamming distance of every (search, record) pair, by numpy
    bits = probes.shape[1] * 8
    x = probes[:, None, :] ^ gallery[None, :, :]
    s = (bits - np.bitwise_count(x).sum(axis=2)).astype(np.float64)
    seg_max, better, own = _rung_reference(s, rungs, mate, mate_score)
    return seg_max.astype(np.float32), better, np.bincount(s[~own].astype(np.int64), minlength=nbins)


@pytest.mark.parametrize("nbytes", [8, 32, 40, 64])
def test_code_ladder_scan_matches_numpy_whatever_the_chunking_and_threads(nbytes):
    rng = np.random.default_rng(nbytes)
    Q, n = 37, 5000
    # correlated codes, so that scores spread and ties occur
    base = rng.integers(0, 256, (1, nbytes), dtype=np.uint8)
    flip = lambda k, p: (rng.random((k, nbytes * 8)) < p)
    gallery = np.packbits(np.unpackbits(base, axis=1) ^ flip(n, 0.3), axis=1)
    mate = np.where(np.arange(Q) % 3 == 0, rng.integers(0, n, Q), -1)
    probes = np.packbits(np.unpackbits(gallery[np.maximum(mate, 0)], axis=1) ^ flip(Q, 0.1), axis=1)
    ms = np.where(mate >= 0, hamming_scores(probes, gallery[np.maximum(mate, 0)]), -np.inf)
    ms = ms.astype(np.float32)
    rungs = np.array([1, 100, 2100, 4096, n - 300])  # the last chunk reaches past the ladder
    mate[1] = 0  # a mate alone in the first rung: that rung has no non-mate
    ms[1] = hamming_scores(probes[1:2], gallery[:1])[0]
    states = []
    for cuts, threads in (([0, n], None), ([0, 1, 333, 2049, 2050, 4100, 4800, n], 1)):
        scan = CodeLadderScan(rungs, probes, mate, ms)
        with thread_count(threads):
            for a, b in zip(cuts, cuts[1:]):
                scan.add(a, gallery[a:b])
        states.append(scan.state())
    for k in ("top_nonmate", "better_than_mate", "impostor_hist"):
        assert np.array_equal(states[0][k], states[1][k]), k
    seg_max, better, hist = _code_reference(rungs, probes, gallery[: rungs[-1]], mate, ms, HIST_BINS)
    assert seg_max[1, 0] == -np.inf
    assert np.array_equal(scan.seg_max, seg_max)
    assert np.array_equal(scan.seg_better, better)
    assert np.array_equal(scan.hist.sum(axis=0), hist)
    # one bin per whole score, [s, s + 1): the pooled FMR at a whole T counts
    # the scores >= T, as FPIR does
    st = states[0]
    assert st["hist_edges"][0] == 0 and st["hist_edges"][1] == 1
    imp = _code_reference(rungs, probes, gallery[: rungs[-1]], mate, ms, HIST_BINS)[2]
    scores = np.repeat(np.arange(HIST_BINS), imp)
    tail = pooled_tail(st["impostor_hist"], st["hist_edges"])
    for t in (np.median(scores), np.quantile(scores, 0.9), np.quantile(scores, 0.9) + 0.5):
        if t <= tail.u:  # the empirical part of the pooled FMR
            assert pooled_fmr(tail, st["impostor_hist"], st["hist_edges"], t) == (scores >= t).mean()
    with pytest.raises(ValueError, match="bytes"):
        scan.add(0, gallery[:10, :-8])
    empty = CodeLadderScan(rungs, probes[:0], mate[:0], ms[:0])
    empty.add(0, gallery)
    assert empty.state()["top_nonmate"].shape == (0, len(rungs))


# one chunk on every thread; chunks cut at and beside the rungs, on one thread
CHUNKINGS = (([0, 3000], None), ([0, 1, 299, 2050, 2100, 3000], 1))


def _scanned(scan: LadderScan, gallery: np.ndarray, cuts: list[int], threads) -> LadderScan:
    # the gallery added to scan in the chunks [cuts[i], cuts[i + 1])
    with thread_count(threads):
        for a, b in zip(cuts, cuts[1:]):
            scan.add(a, gallery[a:b])
    return scan


def _two_shards_merged(make, gallery: np.ndarray) -> LadderScan:
    # scans of the gallery's two halves, merged into a new scan
    halves = [_scanned(make(), gallery, [0, 1500], None),
              _scanned(make(), gallery, [1500, len(gallery)], None)]
    merged = make()
    merged.import_state(LadderScan.merge_states([h.export_state() for h in halves]))
    return merged


@pytest.mark.parametrize("on_codes", [True, False])
def test_rung_lists_are_the_exact_searches_of_every_rung_whatever_the_chunking(on_codes):
    # each rung's kept list is what numba-hamming (numba-flat) returns from
    # the rung's gallery alone, ties to the lower id, the mate included
    from fpscale.matcher.exact import NumbaFlatIP
    rng = np.random.default_rng(11)
    Q, n, k = 23, 3000, 7
    mate = np.where(np.arange(Q) % 2 == 0, rng.integers(0, n, Q), -1)
    if on_codes:
        base = rng.integers(0, 256, (1, 16), dtype=np.uint8)
        gallery = np.packbits(np.unpackbits(base, axis=1) ^ (rng.random((n, 128)) < 0.3), axis=1)
        probes = np.packbits(np.unpackbits(gallery[np.maximum(mate, 0)], axis=1)
                             ^ (rng.random((Q, 128)) < 0.1), axis=1)
        ms = np.where(mate >= 0, hamming_scores(probes, gallery[np.maximum(mate, 0)]), -np.inf)
        make = lambda whole=0: CodeLadderScan(rungs, probes, mate, ms.astype(np.float32), keep=k,
                                             whole=whole)
        exact = NumbaHamming(128)
    else:  # few distinct values: many ties
        gallery = rng.integers(-2, 3, (n, 8)).astype(np.float32)
        probes = rng.integers(-2, 3, (Q, 8)).astype(np.float32)
        ms = np.where(mate >= 0, inner_products(probes, gallery)[np.arange(Q), np.maximum(mate, 0)],
                      -np.inf).astype(np.float32)
        make = lambda whole=0: LadderScan(rungs, probes, mate, ms, 40.0, keep=k, whole=whole)
        exact = NumbaFlatIP(8)
    rungs = np.array([5, 300, 2049, n])  # the first rung holds fewer records than k
    lists = []
    for cuts, threads in CHUNKINGS:
        scan = _scanned(make(), gallery, cuts, threads)
        lists.append(scan.state())
    assert np.array_equal(lists[0]["list_ids"], lists[1]["list_ids"])
    assert np.array_equal(lists[0]["list_scores"], lists[1]["list_scores"])
    for r, nr in enumerate(rungs):
        idx = type(exact)(exact.d)
        idx.add(np.arange(nr), gallery[:nr])
        ids, scores = idx.search(probes, k)
        assert np.array_equal(lists[0]["list_ids"][:, r], ids), r
        assert np.array_equal(lists[0]["list_scores"][:, r], scores), r
    assert (lists[0]["list_ids"][:, 0, 5:] == -1).all()
    # shorter lists are the longer ones' heads; the largest rung's list alone is the last
    short = scan.state(3)
    assert np.array_equal(short["list_ids"], lists[1]["list_ids"][:, :, :3])
    assert np.array_equal(short["list_scores"], lists[1]["list_scores"][:, :, :3])
    top_i, top_s = scan.top_list()
    assert np.array_equal(top_i, lists[1]["list_ids"][:, -1])
    assert np.array_equal(top_s, lists[1]["list_scores"][:, -1])
    # two shards' states merge into the whole gallery's
    merged = _two_shards_merged(make, gallery)
    assert np.array_equal(merged.state()["list_ids"], lists[0]["list_ids"])
    # a whole-gallery list deeper than the rungs': the exact search's top
    # 3k, the same rung lists, chunked, threaded or in shards alike
    deep = []
    for cuts, threads in CHUNKINGS:
        wide = _scanned(make(3 * k), gallery, cuts, threads)
        assert all(np.array_equal(wide.state()[f], lists[0][f]) for f in ("list_ids", "list_scores"))
        deep.append(wide.top_list())
    idx = type(exact)(exact.d)
    idx.add(np.arange(n), gallery)
    ids, scores = idx.search(probes, 3 * k)
    for got in deep:
        assert np.array_equal(got[0], ids) and np.array_equal(got[1], scores)
    merged = _two_shards_merged(lambda: make(3 * k), gallery)
    assert np.array_equal(merged.top_list()[0], ids)
    # without keep, no lists
    assert "list_ids" not in (CodeLadderScan(rungs, probes, mate, ms) if on_codes else
                              LadderScan(rungs, probes, mate, ms, 40.0)).state()


def test_hamming_scores_are_numba_hammings():
    rng = np.random.default_rng(2)
    g = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    p = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    idx = NumbaHamming(256)
    idx.add(np.arange(300), g)
    ids, scores = idx.search(p, 300)
    for q in range(7):
        assert np.array_equal(hamming_scores(np.repeat(p[q:q + 1], 300, 0), g[ids[q]]), scores[q])


def _run(scen, out):
    from fpscale.bench.cli import main
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0


def test_a_code_ladder_run_agrees_with_the_hamming_search_and_ignores_chunk_size(
        tiny, write_toml, tmp_path):
    # two index fingers are the whole record here, so the ladder's best
    # non-mate at the largest rung is numba-hamming's best listed non-mate,
    # and its mate score is the one the search lists
    from fpscale.bench.store.files import read_npz
    from fpscale.bench.store.summary import read_summary
    outs = []
    for chunk in (300, 800):
        d = tiny(search__chunk_size=chunk, search__backends=[{"name": "numba-hamming"}],
                 projection__scores="codes")
        outs.append(tmp_path / f"c{chunk}")
        _run(write_toml(tmp_path / f"c{chunk}.toml", d), outs[-1])
    lad = [read_npz(o / "ladder_two_index.npz") for o in outs]
    for k in ("top_nonmate", "better_than_mate", "impostor_hist", "mate_score"):
        assert np.array_equal(lad[0][k], lad[1][k]), k
    s = read_npz(outs[0] / "searches_numba-hamming.npz")
    best = np.where(s["cand_ids"] != s["mate"][:, None], s["cand_scores"], -np.inf).max(axis=1)
    assert np.array_equal(lad[0]["top_nonmate"][:, -1], best.astype(np.float32))
    listed = s["mate_rank"] >= 1
    assert listed.sum() > 50
    assert np.array_equal(lad[0]["mate_score"][listed], s["mate_score"][listed].astype(np.float32))
    # the mate's rank - 1 is the count of non-mates above it (ties aside)
    assert (lad[0]["better_than_mate"][listed, -1] <= s["mate_rank"][listed] - 1).all()
    assert read_summary(outs[0]).scenario.projection.scores == "codes"
    assert "bits minus Hamming distance" in (outs[0] / "report.md").read_text()


def test_a_streamed_search_lists_what_the_hamming_search_lists(tiny, write_toml, tmp_path):
    # the scan of every searched finger keeps each search's top candidates:
    # its largest rung's lists are numba-hamming's, candidate by candidate,
    # and so are their re-scored lists and the re-scored ladder's
    from fpscale.bench.store.files import read_npz
    from fpscale.bench.store.summary import read_summary
    outs = {}
    for streamed in (False, True):
        d = tiny(search__backends=[{"name": "numba-hamming"}], search__rescore=True,
                 search__rescore_candidates=4, search__streamed=streamed,
                 projection__scores="codes", projection__rescored=True,
                 projection__finger_sets=["one", "two_index"])
        outs[streamed] = tmp_path / f"s{streamed}"
        _run(write_toml(tmp_path / f"s{streamed}.toml", d), outs[streamed])
    # the streamed scan keeps whole lists, but writes the rungs' lists as
    # long as the re-scored ladder reads them, as the indexed one does
    for name in ("searches_numba-hamming.npz", "searches_numba-hamming+minutiae.npz",
                 "ladder_two_index+minutiae.npz", "ladder_one.npz", "ladder_two_index.npz"):
        a, b = read_npz(outs[False] / name), read_npz(outs[True] / name)
        assert set(a) == set(b), name
        for k in a:
            assert np.array_equal(a[k], b[k]), (name, k)
    b = read_npz(outs[True] / "ladder_two_index.npz")
    assert b["list_ids"].shape[2] == 4
    s = read_npz(outs[True] / "searches_numba-hamming.npz")
    assert s["cand_ids"].shape[1] == 10
    assert np.array_equal(b["list_ids"][:, -1], s["cand_ids"][:, :4])
    assert (s["mate_rank"] >= 1).sum() > 50
    summary = read_summary(outs[True])
    row = summary.backends[0]
    assert row.memory.actual_bytes == 0 and row.timings.throughput_searches_per_s is None
    assert summary.memory_plan.indexes == {}
    assert summary.backends[1].metrics == read_summary(outs[False]).backends[1].metrics
    assert "The search was streamed" in (outs[True] / "report.md").read_text()


@pytest.mark.parametrize("over, says", [
    ({"search__backends": [{"name": "numba-flat"}]}, "numba-hamming"),
    ({"projection__scores": "vectors"}, "largest rung"),
    ({"projection__ladder": [40, 80, 400]}, "largest rung"),
    ({"projection__finger_sets": ["one"]}, "every searched finger"),
])
def test_a_streamed_search_needs_the_scan_that_does_it(tiny, over, says):
    from fpscale.bench.scenario import ScenarioError, scenario_from_dict
    d = tiny(search__backends=[{"name": "numba-hamming"}], search__streamed=True,
             projection__scores="codes")
    scenario_from_dict(d)
    for k, v in over.items():
        sec, key = k.split("__")
        d[sec][key] = v
    with pytest.raises(ScenarioError, match=f"streamed.*{says}"):
        scenario_from_dict(d)
    d = tiny(search__backends=[{"name": "numba-hamming"}], search__streamed=True,
             projection__scores="codes")
    d["cluster"] = {"scheduler": "local"}
    scenario_from_dict(d)  # on a cluster too (tests/test_cluster.py)
