"""The ladder scan against a plain-numpy reference, and the same state
whatever the chunking."""

import numpy as np

from fpscale.bench.measure.ladder import LadderScan
from fpscale.matcher.exact import inner_products


def _reference(rungs, probes, gallery, mate, mate_score, scan):
    # every (search, record) score once, the mate left out, by numpy
    s = inner_products(probes, gallery).astype(np.float64)
    Q, n = s.shape
    own = mate[:, None] == np.arange(n)[None, :]
    seg = np.searchsorted(rungs, np.arange(n), side="right")
    seg_max = np.full((Q, len(rungs)), -np.inf)
    better = np.zeros((Q, len(rungs)), dtype=np.int64)
    for r in range(len(rungs)):
        cols = (seg == r)[None, :] & ~own
        seg_max[:, r] = np.where(cols, s, -np.inf).max(axis=1)
        better[:, r] = (cols & (s > mate_score[:, None])).sum(axis=1)
    imp = s[~own]
    k = np.clip(((imp - scan.lo) / scan.width).astype(np.int64), 0,
                len(scan.hist[0]) - 1)
    return seg_max.astype(np.float32), better, np.bincount(k, minlength=len(scan.hist[0]))


def test_ladder_scan_matches_numpy_and_ignores_chunking():
    rng = np.random.default_rng(5)
    Q, n, d = 101, 1324, 24
    probes = (rng.standard_normal((Q, d)) / np.sqrt(d)).astype(np.float32)
    gallery = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    mate = np.where(np.arange(Q) % 3 == 0, rng.integers(0, n, Q), -1)
    ms = np.where(mate >= 0, inner_products(probes, gallery)[np.arange(Q), np.maximum(mate, 0)],
                  -np.inf).astype(np.float32)
    rungs = np.array([100, 700, n])
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
