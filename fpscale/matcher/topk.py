"""Top-L selection kept inside numba scans, and the exact merge of lists.

Order everywhere: higher score first, and among equal scores the lower id
first, so that results do not depend on block sizes, shard counts or thread
counts. Padding is (-1, -inf).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _worse(s1: float, i1: int, s2: float, i2: int) -> bool:
    # is (s1, i1) ranked below (s2, i2)? -1 ids (padding) rank last
    if s1 != s2:
        return s1 < s2
    if i1 < 0:
        return i2 >= 0
    if i2 < 0:
        return False
    return i1 > i2


@njit(cache=True)
def heap_push(hs: np.ndarray, hi: np.ndarray, s: float, i: int, hc=None, c: float = 0.0) -> None:
    """Offer (s, i) to a size-L min-heap whose root hs[0], hi[0] is the worst
    kept. hc (L,), when given, holds a value carried with each entry (c for
    this one); left out, the compiler drops its moves."""
    if not _worse(hs[0], hi[0], s, i):
        return
    L = hs.shape[0]
    pos = 0
    while True:
        k = 2 * pos + 1
        if k >= L:
            break
        if k + 1 < L and _worse(hs[k + 1], hi[k + 1], hs[k], hi[k]):
            k += 1
        if _worse(s, i, hs[k], hi[k]) or (s == hs[k] and i == hi[k]):
            break
        hs[pos] = hs[k]
        hi[pos] = hi[k]
        if hc is not None:
            hc[pos] = hc[k]
        pos = k
    hs[pos] = s
    hi[pos] = i
    if hc is not None:
        hc[pos] = c


@njit(cache=True)
def heap_sort_rows(hs: np.ndarray, hi: np.ndarray) -> None:
    """Sort each row of (Q, L) heaps in place: best first, padding last."""
    Q, L = hs.shape
    for q in range(Q):
        # insertion sort: L is small (tens to a few hundred)
        for a in range(1, L):
            s = hs[q, a]
            i = hi[q, a]
            b = a - 1
            while b >= 0 and _worse(hs[q, b], hi[q, b], s, i):
                hs[q, b + 1] = hs[q, b]
                hi[q, b + 1] = hi[q, b]
                b -= 1
            hs[q, b + 1] = s
            hi[q, b + 1] = i


def empty_lists(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (nq, k) float32 filled with -inf, ids (nq, k) int64 filled with -1)."""
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def list_order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row, the column order (Q, n) of (ids, scores) (Q, n): higher score
    first, ties to the lower id, padding (-1) last."""
    id_key = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    return np.lexsort((id_key, -scores.astype(np.float64)), axis=1)


SORT_ROWS = 256  # rows ordered at a time by ``best_of_rows``: bounds the sort's temporaries


def best_of_rows(ids: np.ndarray, scores: np.ndarray, k: int,
                 carried: np.ndarray | None = None) -> tuple:
    """Each row's best k of (ids, scores) (Q, n), k <= n, in ``list_order``'s
    order, SORT_ROWS rows at a time: ids and scores (Q, k), and carried
    (Q, n) reordered with them where given (else None)."""
    Q = ids.shape[0]
    out_i = np.empty((Q, k), dtype=ids.dtype)
    out_s = np.empty((Q, k), dtype=scores.dtype)
    out_c = None if carried is None else np.empty((Q, k), dtype=carried.dtype)
    for a in range(0, Q, SORT_ROWS):
        b = min(Q, a + SORT_ROWS)
        order = list_order(ids[a:b], scores[a:b])[:, :k]
        out_i[a:b] = np.take_along_axis(ids[a:b], order, axis=1)
        out_s[a:b] = np.take_along_axis(scores[a:b], order, axis=1)
        if out_c is not None:
            out_c[a:b] = np.take_along_axis(carried[a:b], order, axis=1)
    return out_i, out_s, out_c


def merge_lists(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of several (ids, scores) candidate lists of the same probes.

    faiss's ResultHeap and merge_knn_results leave the order of equal scores
    unspecified; here ties go to the lower id so that a sharded search returns
    exactly what one index over the union returns.
    """
    ids = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    out_i, out_s, _ = best_of_rows(ids, scores, min(k, ids.shape[1]))
    if out_i.shape[1] < k:
        pad_s, pad_i = empty_lists(len(ids), k - out_i.shape[1])
        out_i = np.concatenate([out_i, pad_i], axis=1)
        out_s = np.concatenate([out_s, pad_s], axis=1)
    return out_i, out_s
