"""The ladder scan on binary codes: every rung measured in one pass, no float vectors.

The same statistics as ``fpscale.bench.measure.ladder`` (best non-mate
score and non-mates above the mate, per search and rung, and the impostor
histogram), with the scores numba-hamming gives: bits minus the Hamming
distance, whole numbers in [0, bits]. Scoring and the update run in one
kernel, a tile of codes at a time, so no (searches x records) matrix is
ever written: at 130 million records and a few thousand searches the pass
is bound by popcounts, not by memory. Integer scores need no care for
summation order: any chunking, shard or thread count gives the same state.

The histogram has one bin per score (bin s is [s, s + 1)) inside the
float scan's HIST_BINS, so checkpoints, resumes and ``fpscale project``
read both scans' states alike.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from fpscale.bench.measure.ladder import HIST_BINS, LadderScan
from fpscale.matcher.asymmetric import column_scores, score_tables
from fpscale.matcher.exact import NumbaHamming, hamming_distances, max_distance, offer_codes
from fpscale.matcher.deep_lists import admit, buffer_length, merge_buffer, merge_buffers
from fpscale.matcher.topk import best_of_rows

TILE = NumbaHamming.TILE  # codes per tile, as the Hamming search reads them


@njit(cache=True)
def _score_pending(buf: tuple, level: np.ndarray, table: np.ndarray, planes: np.ndarray,
                   start: int) -> None:
    # the asymmetric scores of a buffer's entries admitted since the last
    # time (all of them records of this chunk, ids from start), one search's
    # in a row: its table is read into cache once for all of them, where one
    # entry at a time missed it in most reads
    _, bi, bc = buf
    lo, hi = level[3], level[0]
    column_scores(table, planes, bi[lo:hi] - start, bc[lo:hi])
    level[3] = hi


@njit(cache=True)
def _offer_buffered(dist: np.ndarray, n: int, planes: np.ndarray, g0: int, table: np.ndarray,
                    start: int, bits: int, deep: tuple, ties: np.ndarray) -> None:
    # a tile's n codes (records start + g0 + j) offered to a deep list
    # through its buffer (``fpscale.matcher.deep_lists``); deep: the list
    # (scores, ids, carried), the buffer (the same), its counts by score
    # (bits + 1,) and (entries, threshold, count above it, entries scored)
    # (4,); where the list carries asymmetric scores they are taken before
    # a merge and at the chunk's end (``_score_pending``)
    lst, buf, counts, level = deep
    L = lst[0].shape[0]
    bs, bi, bc = buf
    scored = bc.shape[0] > 0
    nb, thr, above = level[0], level[1], level[2]
    for j in range(n):
        s = bits - np.int64(dist[j])
        if s >= thr:
            bs[nb] = np.float32(s)
            bi[nb] = start + g0 + j
            nb += 1
            thr, above = admit(counts, thr, above, s, L)
            if nb == bs.shape[0]:
                level[0] = nb
                if scored:
                    _score_pending(buf, level, table, planes, start)
                thr, above = merge_buffer(lst, buf, nb, counts, ties)
                nb = 0
                level[3] = 0
    level[0], level[1], level[2] = nb, thr, above


@njit(cache=True, parallel=True)
def _code_scan(qc: np.ndarray, planes: np.ndarray, start: int, segs: np.ndarray,
               mate: np.ndarray, mate_score: np.ndarray, seg_max: np.ndarray,
               seg_better: np.ndarray, hist: np.ndarray, top: tuple, bufs: tuple,
               nthreads: int) -> None:
    # qc (Q, W) probe words; planes (W, n) the chunk's codes as word planes
    # (unit stride per word: LLVM vectorises the popcounts); segs (3, K):
    # local records [segs[0, k], segs[1, k]) of rung segment segs[2, k];
    # hist (threads, >= bits + 1) per-thread impostor counts by score; top:
    # (scores, ids) (Q, R, keep) each segment's top-keep heaps and (scores,
    # ids) (Q, whole) the whole gallery's top-whole lists, worst first
    # (keep, whole may be 0), then their carried asymmetric scores (Q,
    # whole) and the searches' score tables (Q, 8 W, 256) ((Q, 0) and (Q, 0,
    # 256): none carried);
    # bufs: the whole lists' buffers (scores, ids, carried) (Q, B), their
    # counts by score (Q, bits + 1) and (entries, threshold, count above,
    # entries scored) (Q, 4)
    Q, W = qc.shape
    n = planes.shape[1]
    bits = 64 * W
    seg_lo, seg_hi, seg_id = segs[0], segs[1], segs[2]
    top_s, top_i, whole_s, whole_i, whole_c, tables = top
    buf_s, buf_i, buf_c, counts, level = bufs
    keep = top_s.shape[2]
    whole = whole_s.shape[1]
    per = (Q + nthreads - 1) // nthreads
    for t in prange(nthreads):
        tid = numba.get_thread_id()
        q0 = t * per
        q1 = min(Q, q0 + per)
        dist = np.empty(TILE, dtype=np.uint64)
        ties = np.empty(whole + buf_s.shape[1], dtype=np.int64)  # the deep lists' merges' scratch
        no_ids = np.empty(0, dtype=np.int64)  # the records' ids are consecutive
        # counts by distance
        h = np.zeros((4, bits + 1), dtype=np.int64)
        for g0 in range(0, n, TILE):
            g1 = min(n, g0 + TILE)
            for q in range(q0, q1):
                mj = mate[q] - start  # the mate's local record, if in this chunk
                ms = mate_score[q]
                # s > ms is d < bits - ms; a non-mated search counts every non-mate
                dthr = bits + 1 if ms == -np.inf else bits - np.int64(np.floor(ms))
                # the tile's minimum and count, the mate included, come with
                # its distances; the minimum tells whether any record can
                # enter the lists, and the mate's share is taken back below
                tile_best, tile_above = hamming_distances(qc[q], planes, g0, g1, dist, dthr)
                if whole > 0 and tile_best <= bits - level[q, 1]:
                    _offer_buffered(dist, g1 - g0, planes, g0, tables[q], start, bits,
                                    ((whole_s[q], whole_i[q], whole_c[q]),
                                     (buf_s[q], buf_i[q], buf_c[q]), counts[q], level[q]), ties)
                for k in range(len(seg_id)):
                    lo = max(seg_lo[k], g0)
                    hi = min(seg_hi[k], g1)
                    if lo >= hi:
                        continue
                    best = tile_best
                    above = tile_above
                    if lo > g0 or hi < g1:  # a rung boundary inside the tile
                        best = bits + 1
                        above = 0
                        for j in range(lo - g0, hi - g0):
                            d = np.int64(dist[j])
                            best = min(best, d)
                            above += d < dthr
                    # the histogram's scatter goes to four copies in turn,
                    # so that repeated scores do not wait on each other's
                    # stores
                    j = lo - g0
                    while j + 4 <= hi - g0:
                        h[0, dist[j]] += 1
                        h[1, dist[j + 1]] += 1
                        h[2, dist[j + 2]] += 1
                        h[3, dist[j + 3]] += 1
                        j += 4
                    while j < hi - g0:
                        h[0, dist[j]] += 1
                        j += 1
                    g = seg_id[k]
                    # the lists hold the mate too, as the search's do
                    if keep > 0 and best <= np.int64(max_distance(bits, top_s[q, g, 0])):
                        offer_codes(dist, lo - g0, hi - g0, no_ids, start + g0, bits,
                                    top_s[q, g], top_i[q, g])
                    if lo <= mj < hi:  # the mate is no non-mate
                        dm = np.int64(dist[mj - g0])
                        h[0, dm] -= 1
                        above -= dm < dthr
                        if dm == best:
                            best = bits + 1
                            for j in range(lo - g0, hi - g0):
                                if j != mj - g0:
                                    best = min(best, np.int64(dist[j]))
                    if best <= bits and np.float32(bits - best) > seg_max[q, g]:
                        seg_max[q, g] = np.float32(bits - best)
                    seg_better[q, g] += above
        for d in range(bits + 1):
            hist[tid, bits - d] += h[0, d] + h[1, d] + h[2, d] + h[3, d]
        if whole > 0 and whole_c.shape[1] > 0:
            for q in range(q0, q1):
                _score_pending((buf_s[q], buf_i[q], buf_c[q]), level[q], tables[q], planes, start)


class CodeLadderScan(LadderScan):
    """Accumulates ladder statistics on binary codes for one finger set."""

    on_codes = True

    def __init__(self, rungs: np.ndarray, probes: np.ndarray, mate: np.ndarray,
                 mate_score: np.ndarray, keep: int = 0, whole: int = 0,
                 projected: np.ndarray | None = None) -> None:
        """rungs: increasing gallery sizes (R,); probes (Q, bytes) uint8 packed
        codes of this finger set (bytes a multiple of 8); mate (Q,) gallery
        id or -1; mate_score (Q,) bits minus the mate's Hamming distance
        (-inf when none); keep: top records kept per search and rung (0: none);
        whole: top records of the whole gallery kept per search (0: none);
        projected (Q, bits) float32: the searches' code projections
        (``fpscale.matcher.asymmetric.code_projections``), given to carry
        each whole-gallery entry's asymmetric score (``reranked``)."""
        probes = np.ascontiguousarray(probes, dtype=np.uint8)
        if probes.ndim != 2 or probes.shape[1] % 8 or probes.shape[1] * 8 + 1 > HIST_BINS:
            raise ValueError(f"probe codes must be (Q, 8k) bytes with 8k * 8 < {HIST_BINS}, "
                             f"got {probes.shape}")
        bits = probes.shape[1] * 8
        # the same histogram length as the float scan's
        super().__init__(rungs, np.zeros((len(probes), 1), np.float32), mate, mate_score,
                         HIST_BINS / 2, keep, whole)
        self.probes = probes.view(np.uint64)
        self.bits = bits
        Q = len(probes)
        if projected is not None and self.whole:
            if projected.shape != (Q, bits):
                raise ValueError(f"projections must be (Q, {bits}), got {projected.shape}")
            self.tables = score_tables(np.ascontiguousarray(projected, dtype=np.float32))
            self.whole_c = np.full((Q, self.whole), -np.inf, dtype=np.float32)
        else:
            self.tables = np.zeros((Q, 0, 256), dtype=np.float32)
            self.whole_c = np.zeros((Q, 0), dtype=np.float32)
        # the whole lists' buffers, merged in before anything reads the lists
        B = buffer_length(self.whole) if self.whole else 0
        self.buf_s = np.empty((Q, B), dtype=np.float32)
        self.buf_i = np.empty((Q, B), dtype=np.int64)
        self.buf_c = np.empty((Q, B if self.whole_c.shape[1] else 0), dtype=np.float32)
        self.buf_counts = np.zeros((Q, bits + 1), dtype=np.int64)
        self.buf_level = np.zeros((Q, 4), dtype=np.int64)
        # bin s is [s, s + 1): the count above an edge T is the count of
        # scores >= T, as FPIR and the pooled FMR read it
        self.lo, self.width = 0.0, 1.0

    def add(self, start: int, gallery: np.ndarray) -> None:
        """Score one gallery chunk of codes (n, bytes) uint8, ids start..start+n-1."""
        if gallery.ndim != 2 or gallery.shape[1] != self.bits // 8:
            raise ValueError(f"gallery codes must be (n, {self.bits // 8}) bytes, got {gallery.shape}")
        stop = min(start + len(gallery), int(self.rungs[-1]))
        if stop <= start:
            return
        planes = np.ascontiguousarray(
            np.ascontiguousarray(gallery[: stop - start], dtype=np.uint8).view(np.uint64).T)
        # the rung segments this chunk meets, as local record ranges
        first = int(np.searchsorted(self.rungs, start, side="right"))
        last = int(np.searchsorted(self.rungs, stop - 1, side="right"))
        seg_id = np.arange(first, last + 1, dtype=np.int64)
        bounds = np.concatenate([[0], self.rungs])
        segs = np.stack([np.maximum(bounds[seg_id], start) - start,
                         np.minimum(bounds[seg_id + 1], stop) - start, seg_id])
        _code_scan(self.probes, planes, start, segs, self.mate, self.mate_score, self.seg_max,
                   self.seg_better, self.hist, (*self._lists(), self.whole_c, self.tables),
                   (self.buf_s, self.buf_i, self.buf_c, self.buf_counts, self.buf_level),
                   numba.get_num_threads())

    def _merge_buffers(self, every: bool = False) -> None:
        # the buffered entries into the whole lists, so that they hold the
        # top; every: the buffers' state set again from lists read back
        if self.whole and (every or self.buf_level[:, 0].any()):
            merge_buffers((self.whole_s, self.whole_i, self.whole_c),
                          (self.buf_s, self.buf_i, self.buf_c), (self.buf_counts, self.buf_level),
                          every, numba.get_num_threads())

    @property
    def scored(self) -> bool:
        """Whether the whole-gallery list carries asymmetric scores."""
        return self.whole_c.shape[1] > 0

    def export_state(self) -> dict[str, np.ndarray]:
        self._merge_buffers()
        st = super().export_state()
        if self.scored:
            st["whole_asym"] = self.whole_c
        return st

    def import_state(self, st: dict[str, np.ndarray]) -> None:
        super().import_state(st)
        if self.scored:
            self.whole_c = np.array(st["whole_asym"], dtype=np.float32)
        self.buf_level[:, 0] = 0
        self._merge_buffers(every=True)

    def top_list(self) -> tuple[np.ndarray, np.ndarray]:
        self._merge_buffers()
        return super().top_list()

    def reranked(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole-gallery lists re-ranked by their asymmetric scores:
        the best k of each, ids and scores (Q, k), higher first, ties to the
        lower id, (-1, -inf) padded."""
        if not self.scored:
            raise ValueError("this scan carries no asymmetric scores")
        self._merge_buffers()
        return best_of_rows(self.whole_i, self.whole_c, min(k, self.whole))[:2]


def hamming_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise scores (n,) float32 of packed codes a[i] and b[i] (n, bytes)
    uint8: bits minus the Hamming distance, as numba-hamming scores a pair."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    b = np.ascontiguousarray(b, dtype=np.uint8)
    dist = np.bitwise_count(a ^ b).sum(axis=1, dtype=np.int64)
    return (a.shape[1] * 8 - dist).astype(np.float32)
