"""One pass over the gallery that measures every rung of a ladder at once.

The rungs are gallery prefixes [0, N_r). For every search, finger set and
rung the pass keeps the best non-mate score (what FPIR needs) and the number
of non-mates that outscore the mate (the mate's rank - 1, for FNIR), and it
histograms every impostor score it sees, (searches x N) pairs, to estimate
the per-comparison FMR(T) far into the tail. Memory is (Q x rungs) plus
the histogram, whatever N.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from fpscale.matcher.exact import inner_products

HIST_BINS = 40_000


@njit(cache=True, parallel=True)
def _update(scores: np.ndarray, start: int, seg_of: np.ndarray, mate: np.ndarray,
            mate_score: np.ndarray, seg_max: np.ndarray, seg_better: np.ndarray,
            hist: np.ndarray, lo: float, width: float) -> None:
    # scores (Q, n) for gallery ids start..start+n-1; seg_of (n,) rung segment
    # of each id; hist (threads, bins) per-thread impostor histograms
    Q, n = scores.shape
    nb = hist.shape[1]
    for q in prange(Q):
        tid = numba.get_thread_id()
        m = mate[q]
        ms = mate_score[q]
        for j in range(n):
            if start + j == m:
                continue
            s = scores[q, j]
            g = seg_of[j]
            if s > seg_max[q, g]:
                seg_max[q, g] = s
            if s > ms:
                seg_better[q, g] += 1
            b = int((s - lo) / width)
            if b < 0:
                b = 0
            elif b >= nb:
                b = nb - 1
            hist[tid, b] += 1


def block_records(d: int) -> int:
    """Records of d float32 dimensions the float scan scores at a time."""
    # about 512 KiB of them: every probe block then reads them from cache
    # (a whole chunk would stream from memory once per probe block, 8x
    # slower at 128 dimensions), and the score block is (searches x this)
    return max(64, (512 << 10) // (4 * d))


class LadderScan:
    """Accumulates ladder statistics for one finger set (a column slice)."""

    on_codes = False  # scores float vectors; CodeLadderScan scores codes

    def __init__(self, rungs: np.ndarray, probes: np.ndarray, mate: np.ndarray,
                 mate_score: np.ndarray, score_range: float) -> None:
        """rungs: increasing gallery sizes (R,); probes (Q, d) float32 (the
        slice of this finger set); mate (Q,) gallery id or -1; mate_score (Q,)
        the probe's score against its mate (-inf when none); scores lie in
        [-score_range, score_range]."""
        self.rungs = np.asarray(rungs, dtype=np.int64)
        self.probes = np.ascontiguousarray(probes, dtype=np.float32)
        self.mate = np.asarray(mate, dtype=np.int64)
        self.mate_score = np.asarray(mate_score, dtype=np.float32)
        Q, R = len(self.mate), len(self.rungs)
        self.seg_max = np.full((Q, R), -np.inf, dtype=np.float32)
        self.seg_better = np.zeros((Q, R), dtype=np.int64)
        self.lo = -float(score_range)
        self.width = 2.0 * score_range / HIST_BINS
        self.hist = np.zeros((numba.config.NUMBA_NUM_THREADS, HIST_BINS), dtype=np.int64)

    def add(self, start: int, gallery: np.ndarray) -> None:
        """Score one gallery chunk (n, d) float32 of ids start..start+n-1."""
        stop = min(start + len(gallery), int(self.rungs[-1]))
        if stop <= start:
            return
        g = np.ascontiguousarray(gallery[: stop - start], dtype=np.float32)
        seg_of = np.searchsorted(self.rungs, np.arange(start, stop), side="right").astype(np.int64)
        step = block_records(g.shape[1])
        for a in range(0, len(g), step):
            # numba-flat's kernel, not BLAS: each pair's score must not depend
            # on the chunk, the shard or the thread count (fpscale.matcher.exact)
            scores = inner_products(self.probes, g[a:a + step])
            _update(scores, start + a, seg_of[a:a + step], self.mate, self.mate_score,
                    self.seg_max, self.seg_better, self.hist, self.lo, self.width)

    def export_state(self) -> dict[str, np.ndarray]:
        """The accumulators, to checkpoint the gallery pass."""
        return {"seg_max": self.seg_max, "seg_better": self.seg_better, "hist": self.hist.sum(axis=0)}

    @staticmethod
    def merge_states(states: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The accumulators of scans over disjoint parts of the gallery,
        combined: maxima of the best non-mate scores, sums of the counts.
        Both are exact and independent of the order, so a gallery scanned
        in shards gives the state of one scan over all of it."""
        return {"seg_max": np.maximum.reduce([st["seg_max"] for st in states]),
                "seg_better": np.sum([st["seg_better"] for st in states], axis=0),
                "hist": np.sum([st["hist"] for st in states], axis=0)}

    def import_state(self, st: dict[str, np.ndarray]) -> None:
        self.seg_max = np.array(st["seg_max"], dtype=np.float32)
        self.seg_better = np.array(st["seg_better"], dtype=np.int64)
        self.hist[:] = 0
        self.hist[0] = st["hist"]

    def state(self) -> dict[str, np.ndarray]:
        """Per rung: best non-mate score (Q, R), non-mates above the mate
        (Q, R), and the impostor score histogram (bins,) with its edges."""
        return {
            "rungs": self.rungs,
            "top_nonmate": np.maximum.accumulate(self.seg_max, axis=1),
            "better_than_mate": np.cumsum(self.seg_better, axis=1),
            "impostor_hist": self.hist.sum(axis=0),
            "hist_edges": self.lo + self.width * np.arange(HIST_BINS + 1),
            "mate_score": self.mate_score,
        }
