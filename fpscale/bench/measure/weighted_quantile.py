"""Weighted upper quantiles of one sorted sample under many bootstrap
weightings, the inner loop of the shift model's resampled slopes."""

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
    return _walk(np.ascontiguousarray(x[order], dtype=np.float64), order.astype(np.int64), w,
                 np.ascontiguousarray(need))
