"""One pass over the gallery that measures every rung of a ladder at once.

The rungs are gallery prefixes [0, N_r). For every search, finger set and
rung the pass keeps the best non-mate score (what FPIR needs) and the number
of non-mates that outscore the mate (the mate's rank - 1, for FNIR), and it
histograms every impostor score it sees, (searches x N) pairs, to estimate
the per-comparison FMR(T) far into the tail. Memory is (Q x rungs) plus
the histogram, whatever N.

With ``keep`` > 0 the pass also keeps each search's top ``keep`` records
of every rung segment (higher score first, ties to the lower id, as the
exact searches order them), so that every rung's candidate list can be
re-scored afterwards: the re-scored pipeline measured at every rung, not
only the first stage. Memory then grows by (Q x rungs x keep) ids and
scores. With ``whole`` > 0 it keeps each search's top ``whole`` records of
the whole gallery in one more list, for a streamed search whose lists are
deeper than the rungs': one heap over the whole gallery, where a heap per
rung segment as deep would each start empty and take in about five times
as many records.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from fpscale.matcher.exact import inner_products
from fpscale.matcher.topk import best_of_rows, empty_lists, heap_push, merge_lists

HIST_BINS = 40_000


@njit(cache=True, parallel=True)
def _update(scores: np.ndarray, start: int, seg_of: np.ndarray, mate: np.ndarray,
            mate_score: np.ndarray, seg_max: np.ndarray, seg_better: np.ndarray,
            hist: np.ndarray, lo: float, width: float, lists: tuple) -> None:
    # scores (Q, n) for gallery ids start..start+n-1; seg_of (n,) rung segment
    # of each id; hist (threads, bins) per-thread impostor histograms; lists:
    # (scores, ids) (Q, R, keep) each segment's top-keep heaps and (scores,
    # ids) (Q, whole) the whole gallery's top-whole heaps (keep, whole may be 0)
    Q, n = scores.shape
    nb = hist.shape[1]
    top_s, top_i, whole_s, whole_i = lists
    keep = top_s.shape[2]
    whole = whole_s.shape[1]
    for q in prange(Q):
        tid = numba.get_thread_id()
        m = mate[q]
        ms = mate_score[q]
        for j in range(n):
            s = scores[q, j]
            g = seg_of[j]
            # the lists hold the mate too, as the search's do
            if keep > 0 and s >= top_s[q, g, 0]:
                heap_push(top_s[q, g], top_i[q, g], s, start + j)
            if whole > 0 and s >= whole_s[q, 0]:
                heap_push(whole_s[q], whole_i[q], s, start + j)
            if start + j == m:
                continue
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
                 mate_score: np.ndarray, score_range: float, keep: int = 0,
                 whole: int = 0) -> None:
        """rungs: increasing gallery sizes (R,); probes (Q, d) float32 (the
        slice of this finger set); mate (Q,) gallery id or -1; mate_score (Q,)
        the probe's score against its mate (-inf when none); scores lie in
        [-score_range, score_range]; keep: top records kept per search and
        rung (0: none); whole: top records of the whole gallery kept per
        search (0: none; ``top_list`` then merges the rungs')."""
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
        self.keep = int(keep)
        top_s, top_i = empty_lists(Q * R, self.keep)
        self.top_s, self.top_i = top_s.reshape(Q, R, self.keep), top_i.reshape(Q, R, self.keep)
        self.whole = int(whole)
        self.whole_s, self.whole_i = empty_lists(Q, self.whole)

    def _lists(self) -> tuple:
        """The heaps the kernels fill: each segment's, then the whole gallery's."""
        return self.top_s, self.top_i, self.whole_s, self.whole_i

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
                    self.seg_max, self.seg_better, self.hist, self.lo, self.width,
                    self._lists())

    def export_state(self) -> dict[str, np.ndarray]:
        """The accumulators, to checkpoint the gallery pass."""
        st = {"seg_max": self.seg_max, "seg_better": self.seg_better, "hist": self.hist.sum(axis=0)}
        if self.keep:
            st.update(top_scores=self.top_s, top_ids=self.top_i)
        if self.whole:
            st.update(whole_scores=self.whole_s, whole_ids=self.whole_i)
        return st

    @staticmethod
    def merge_states(states: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The accumulators of scans over disjoint parts of the gallery,
        combined: maxima of the best non-mate scores, sums of the counts,
        the top of the kept lists' union. All are exact and independent of
        the order, so a gallery scanned in shards gives the state of one
        scan over all of it."""
        out = {"seg_max": np.maximum.reduce([st["seg_max"] for st in states]),
               "seg_better": np.sum([st["seg_better"] for st in states], axis=0),
               "hist": np.sum([st["hist"] for st in states], axis=0)}
        if "top_ids" in states[0]:
            Q, R, k = states[0]["top_ids"].shape
            ids, scores = merge_lists([(st["top_ids"].reshape(Q * R, k),
                                        st["top_scores"].reshape(Q * R, k)) for st in states], k)
            out.update(top_ids=ids.reshape(Q, R, k), top_scores=scores.reshape(Q, R, k))
        if "whole_ids" in states[0]:
            k = states[0]["whole_ids"].shape[1]
            ids, scores, carried = (np.concatenate([st[name] for st in states], axis=1)
                                    if name in states[0] else None
                                    for name in ("whole_ids", "whole_scores", "whole_asym"))
            # what each entry carries follows it (a code scan's asymmetric scores)
            out["whole_ids"], out["whole_scores"], asym = best_of_rows(ids, scores, k, carried)
            if asym is not None:
                out["whole_asym"] = asym
        return out

    def import_state(self, st: dict[str, np.ndarray]) -> None:
        self.seg_max = np.array(st["seg_max"], dtype=np.float32)
        self.seg_better = np.array(st["seg_better"], dtype=np.int64)
        self.hist[:] = 0
        self.hist[0] = st["hist"]
        if self.keep:
            self.top_s = np.array(st["top_scores"], dtype=np.float32)
            self.top_i = np.array(st["top_ids"], dtype=np.int64)
        if self.whole:
            self.whole_s = np.array(st["whole_scores"], dtype=np.float32)
            self.whole_i = np.array(st["whole_ids"], dtype=np.int64)

    def rung_lists(self, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each rung's top list, ``width`` long (at most keep; default keep):
        ids and scores (Q, R, width), best first, ties to the lower id, (-1,
        -inf) padded: what an exact search of the rung's gallery [0, N_r)
        returns."""
        Q, R, k = self.top_i.shape
        k = k if width is None else min(width, k)
        ids = np.empty((Q, R, k), dtype=np.int64)
        scores = np.empty((Q, R, k), dtype=np.float32)
        prev: list[tuple[np.ndarray, np.ndarray]] = []
        for r in range(R):
            # rung r: the last rung's list and segment r's heap (unordered), sorted
            ids[:, r], scores[:, r] = merge_lists([*prev, (self.top_i[:, r], self.top_s[:, r])], k)
            prev = [(ids[:, r], scores[:, r])]
        return ids, scores

    def top_list(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole gallery's top list, ids and scores (Q, whole), or
        without whole the largest rung's (Q, keep), as ``rung_lists`` gives
        it, without holding every rung's; best first, ties to the lower id."""
        if self.whole:
            return best_of_rows(self.whole_i, self.whole_s, self.whole)[:2]
        prev: list[tuple[np.ndarray, np.ndarray]] = []
        for r in range(self.top_i.shape[1]):
            prev = [merge_lists([*prev, (self.top_i[:, r], self.top_s[:, r])], self.keep)]
        return prev[0]

    def state(self, width: int | None = None) -> dict[str, np.ndarray]:
        """Per rung: best non-mate score (Q, R), non-mates above the mate
        (Q, R), and the impostor score histogram (bins,) with its edges;
        with keep, each rung's list (``rung_lists(width)``) as list_ids and
        list_scores (Q, R, width)."""
        lists = {}
        if self.keep:
            lists["list_ids"], lists["list_scores"] = self.rung_lists(width)
        return {
            "rungs": self.rungs,
            "top_nonmate": np.maximum.accumulate(self.seg_max, axis=1),
            "better_than_mate": np.cumsum(self.seg_better, axis=1),
            "impostor_hist": self.hist.sum(axis=0),
            "hist_edges": self.lo + self.width * np.arange(HIST_BINS + 1),
            "mate_score": self.mate_score,
            **lists,
        }
