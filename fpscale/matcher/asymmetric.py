"""Asymmetric scores of binary codes: a search's float projection against a record's code bits.

A record's code is the sign pattern of W^T v, finger by finger
(``fpscale.synth.embedding``). A Hamming score compares two sign patterns;
the asymmetric score keeps the search's side unquantised: the sum over bits
r of y_r s_r, with y = W^T v of the search's own vector and s_r = +1 where
the record's bit r is set, -1 where it is not (Gordo, Perronnin, Gong and
Lazebnik, "Asymmetric distances for binary embeddings", IEEE TPAMI 36(1),
2014). It orders a search's code neighbours closer to the float vectors'
order than Hamming scores do, at the cost of float sums instead of
popcounts: fpscale re-ranks the codes' deep lists by it
(docs/national-scale.md).

A score is read through a table per search holding, for each code byte,
the partial sum of each of its 256 values (as faiss's look-up-table
distance computations read product-quantiser codes): eight table reads per
64-bit word. Every sum is float32 in a fixed order, so a pair gets the same
bits on any CPU and in any chunk, shard or thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def code_projections(vectors: np.ndarray, w: np.ndarray, n_fingers: int) -> np.ndarray:
    """y (Q, n_fingers * bits) float32 of record vectors (Q, n_fingers * dim)
    float32 and the code matrix w (dim, bits) float64: finger f's block is
    W^T v_f, summed in float64 over increasing k."""
    Q = vectors.shape[0]
    dim, bits = w.shape
    out = np.empty((Q, n_fingers * bits), dtype=np.float32)
    for q in prange(Q):
        for f in range(n_fingers):
            acc = np.zeros(bits)
            for k in range(dim):
                vk = np.float64(vectors[q, f * dim + k])
                for r in range(bits):
                    acc[r] += w[k, r] * vk
            for r in range(bits):
                out[q, f * bits + r] = np.float32(acc[r])
    return out


@njit(cache=True, parallel=True)
def score_tables(y: np.ndarray) -> np.ndarray:
    """Tables (Q, bits / 8, 256) float32 of projections y (Q, bits) float32:
    entry [q, k, v] is the sum over bits b = 0..7, in that order, of
    y[q, 8 k + b] where bit b of byte value v is set and -y[q, 8 k + b]
    where it is not (bit b of a code byte is code bit 8 k + b)."""
    Q, bits = y.shape
    out = np.empty((Q, bits // 8, 256), dtype=np.float32)
    for q in prange(Q):
        for k in range(bits // 8):
            for v in range(256):
                s = np.float32(0.0)
                for b in range(8):
                    yb = y[q, 8 * k + b]
                    s += yb if (v >> b) & 1 else -yb
                out[q, k, v] = s
    return out


@njit(cache=True, inline="always")
def plane_score(table: np.ndarray, planes: np.ndarray, j: int) -> np.float32:
    """The score of code j of word planes (W, n) uint64 (the codes' bytes
    read as little-endian 64-bit words) against one search's table (8 W,
    256): its byte scores added in byte order, in float32."""
    s = np.float32(0.0)
    for w in range(planes.shape[0]):
        x = planes[w, j]
        for k in range(8):
            s += table[8 * w + k, np.int64((x >> np.uint64(8 * k)) & np.uint64(255))]
    return s


LANES = 8  # codes scored side by side by ``column_scores``


@njit(cache=True)
def column_scores(table: np.ndarray, planes: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """out[e] = ``plane_score``(table, planes, cols[e]) for cols (n,) int64,
    the same bits: LANES codes at a time, each its own sum in the same
    order, so that the additions, which wait on each other within a code,
    overlap across codes."""
    n = cols.shape[0]
    W = planes.shape[0]
    acc = np.empty(LANES, dtype=np.float32)
    x = np.empty(LANES, dtype=np.uint64)
    e0 = 0
    while e0 + LANES <= n:
        acc[:] = 0.0
        for w in range(W):
            for e in range(LANES):
                x[e] = planes[w, cols[e0 + e]]
            for k in range(8):
                row = 8 * w + k
                for e in range(LANES):
                    acc[e] += table[row, np.int64((x[e] >> np.uint64(8 * k)) & np.uint64(255))]
        out[e0:e0 + LANES] = acc
        e0 += LANES
    for e in range(e0, n):
        out[e] = plane_score(table, planes, cols[e])


@njit(cache=True, parallel=True)
def paired_scores(tables: np.ndarray, probe: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Scores (n,) float32 of searches probe (n,) int64 (rows of tables
    (Q, bytes, 256)) against codes (n, bytes) uint8, pair by pair: the bits
    the scan gives each pair (``plane_score``)."""
    n, nbytes = codes.shape
    out = np.empty(n, dtype=np.float32)
    for i in prange(n):
        t = tables[probe[i]]
        s = np.float32(0.0)
        for k in range(nbytes):
            s += t[k, codes[i, k]]
        out[i] = s
    return out
