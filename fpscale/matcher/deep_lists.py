"""Deep top-L lists of whole-number scores, filled through a buffer.

A heap push walks about log2 L levels of a search's list, and with
thousands of searches each keeping tens of thousands of records no list is
in cache when its search's turn comes: at L = 20,000 a push cost about 0.4
us, most of a streamed code scan's time while its lists fill. Here the
records a search admits are appended to a buffer, and a full buffer is
merged into the list in a few passes over it. The scores are whole numbers
in [0, bits] (bits minus a Hamming distance), so a count per score gives the
merged list's threshold without sorting, as faiss's Hamming k-NN with
counters (``hammings_knn_mc``) counts per distance; only the records tied
at the threshold are sorted, by id.

A list is unordered but for its worst entry, kept first: the threshold a
scan compares against, as a min-heap's root is. What it holds after a merge
is the exact top L of everything offered, in fpscale's order (higher score
first, ties to the lower id), whatever the buffer's length or when it was
merged; a list left by ``fpscale.matcher.topk.heap_push`` (a heap: worst
first as well) can be filled on.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fpscale.matcher.topk import _worse


def buffer_length(depth: int) -> int:
    """Entries a search's buffer holds for a list of depth records: a merge
    costs a few passes over the list, so half of it keeps that to a few
    reads an entry (a quarter took about 1.4 times as long at 20,000)."""
    return max(256, depth // 2)


@njit(cache=True)
def _worst_first(hs: np.ndarray, hi: np.ndarray, hc: np.ndarray) -> None:
    # move the list's worst entry (padding first of all) to position 0
    w = 0
    for a in range(1, hs.shape[0]):
        if _worse(hs[a], hi[a], hs[w], hi[w]):
            w = a
    if w:
        hs[0], hs[w] = hs[w], hs[0]
        hi[0], hi[w] = hi[w], hi[0]
        if hc.shape[0]:
            hc[0], hc[w] = hc[w], hc[0]


@njit(cache=True)
def merge_buffer(lst: tuple, buf: tuple, n: int, counts: np.ndarray,
                 ties: np.ndarray) -> tuple[int, int]:
    """Merge a buffer's first n entries into a list, in place.

    lst: (scores (L,) float32, ids (L,) int64, carried (L,) or (0,) float32),
    worst first, (-inf, -1) padded; buf: the same three arrays, longer than
    n, holding entries not in the list; counts (bits + 1,) int64: left
    holding the merged list's entries by score; ties (at least L + n,) int64
    scratch. Scores are whole numbers in [0, bits]. Returns the admission
    threshold and the count above it (``admit``'s state)."""
    hs, hi, hc = lst
    bs, bi, bc = buf
    L = hs.shape[0]
    carried = hc.shape[0] > 0
    counts[:] = 0
    held = 0
    for a in range(L):
        if hi[a] >= 0:
            counts[np.int64(hs[a])] += 1
            held += 1
    for b in range(n):
        counts[np.int64(bs[b])] += 1
    if held + n <= L:  # room for every entry: they take the padding's places
        b = 0
        for a in range(L):
            if b == n:
                break
            if hi[a] < 0:
                hs[a], hi[a] = bs[b], bi[b]
                if carried:
                    hc[a] = bc[b]
                b += 1
        _worst_first(hs, hi, hc)
        thr, above = 0, held + n - counts[0]
        while above >= L:  # a list just filled with no entry at 0
            thr += 1
            above -= counts[thr]
        return thr, above
    # the threshold t: fewer than L entries score above it, at least L at or above
    t = counts.shape[0] - 1
    above = 0
    while above + counts[t] < L:
        above += counts[t]
        t -= 1
    ts = np.float32(t)
    need = L - above
    cut = np.iinfo(np.int64).max  # ids kept at score t: those <= cut
    if need < counts[t]:
        m = 0
        for a in range(L):
            if hi[a] >= 0 and hs[a] == ts:
                ties[m] = hi[a]
                m += 1
        for b in range(n):
            if bs[b] == ts:
                ties[m] = bi[b]
                m += 1
        cut = np.sort(ties[:m])[need - 1]
    # the list's entries that go make room for the buffer's that stay: as
    # many of one as of the other, since L are kept
    b = 0
    for a in range(L):
        if hi[a] >= 0 and (hs[a] > ts or (hs[a] == ts and hi[a] <= cut)):
            continue
        while not (bs[b] > ts or (bs[b] == ts and bi[b] <= cut)):
            b += 1
        hs[a], hi[a] = bs[b], bi[b]
        if carried:
            hc[a] = bc[b]
        b += 1
    _worst_first(hs, hi, hc)
    counts[:t] = 0
    counts[t] = need
    return t, above


@njit(cache=True, inline="always")
def admit(counts: np.ndarray, thr: int, above: int, s: int, L: int) -> tuple[int, int]:
    """Count an admitted score s (>= thr) and raise the threshold past every
    score that L entries already beat (a search's state: counts (bits + 1,)
    of listed and buffered entries by score, thr, and above = how many score
    above thr): the buffer then takes about as many entries as a heap
    would. Returns the new (thr, above)."""
    counts[s] += 1
    if s > thr:
        above += 1
        while above >= L:
            thr += 1
            above -= counts[thr]
    return thr, above


@njit(cache=True, parallel=True)
def merge_buffers(lists: tuple, bufs: tuple, state: tuple, every: bool, nthreads: int) -> None:
    """Merge each search's buffer into its list and empty it: lists and bufs
    (scores, ids, carried) of shapes (Q, L) and (Q, B) (carried (Q, 0) where
    none); state: counts (Q, bits + 1) int64 and (n, thr, above, ...)
    (Q, >= 3) int64, what each buffer holds and ``admit``'s state; the
    carried values of the n entries must be set. every: all
    searches, to set the state from lists read back; else those whose
    buffer holds entries."""
    hs, hi, hc = lists
    bs, bi, bc = bufs
    counts, level = state
    Q, L = hs.shape
    per = (Q + nthreads - 1) // nthreads
    for t in prange(nthreads):
        ties = np.empty(L + bs.shape[1], dtype=np.int64)
        for q in range(t * per, min(Q, (t + 1) * per)):
            if every or level[q, 0]:
                level[q, 1], level[q, 2] = merge_buffer(
                    (hs[q], hi[q], hc[q]), (bs[q], bi[q], bc[q]), level[q, 0], counts[q], ties)
                level[q, 0] = 0
                if level.shape[1] > 3:  # a scan's count of entries scored
                    level[q, 3] = 0
