"""One sorted sample under many bootstrap weightings: its weighted upper
quantiles (the shift model's resampled slopes) and the weight at or above
given positions (its resampled predictions)."""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def _walk(x: np.ndarray, order: np.ndarray, w: np.ndarray, need: np.ndarray) -> np.ndarray:
    # Hand-written because numpy needs the (b, n) weights permuted, summed
    # and offset into three (b, n) temporaries per call; one walk per row in
    # sorted order reads each weight once and stops at the last level.
    b, J = need.shape
    n = len(order)
    out = np.empty((b, J), np.float64)
    for i in prange(b):
        acc = 0.0
        j = 0
        for k in range(n):
            acc += w[i, order[k]]
            while j < J and acc >= need[i, j]:
                out[i, j] = x[k]
                j += 1
            if j == J:
                break
        while j < J:
            out[i, j] = x[n - 1]
            j += 1
    return out


def upper_quantiles(x: np.ndarray, order: np.ndarray, w: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """For each row of weights w (b, n) over the sample x (n,), taken in the
    descending order `order` (n,), the largest value of x with at least a
    share levels[j] of the row's weight at or above it, for every level
    (J,, increasing). Returns (b, J) float64."""
    w = np.ascontiguousarray(w, dtype=np.float64)     # a no-op when the caller made it so
    need = levels[None, :] * w.sum(axis=1)[:, None] - 1e-9
    return _walk(np.ascontiguousarray(x[order], dtype=np.float64), np.asarray(order, np.int64), w,
                 np.ascontiguousarray(need))


@njit(cache=True, parallel=True)
def _walk_down(col: np.ndarray, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Hand-written for the same reason as _walk: numpy's reversed cumulative
    # sum makes (b, n) temporaries to read k values a row. The sum runs from
    # the top of the sample down, the order numpy's reversed cumsum adds in.
    b, k = idx.shape
    n = len(col)
    out = np.zeros((b, k), np.float64)
    for i in prange(b):
        js = np.argsort(idx[i])[::-1]
        acc = 0.0
        p = n
        for jj in range(k):
            j = js[jj]
            while p > idx[i, j]:
                p -= 1
                acc += w[i, col[p]]
            out[i, j] = acc
    return out


def weight_at_or_above(col: np.ndarray, w: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """For each row of weights w (b, G), the total weight of the sample's
    positions idx[i, j] .. n-1 (n = len(col), positions in ascending order
    of the sample; idx (b, k) in 0..n, n giving 0), position p weighing
    w[i, col[p]] (col (n,): the weight column of each sorted position).
    Returns (b, k) float64."""
    return _walk_down(np.asarray(col, np.int64), np.ascontiguousarray(w, dtype=np.float64),
                      np.ascontiguousarray(idx, dtype=np.int64))
