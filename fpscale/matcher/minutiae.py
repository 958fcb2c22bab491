"""1:1 minutiae matching in numba, for re-scoring a search's candidates.

Alignment by local structures, pairing by tolerance boxes:

1. Each minutia gets an invariant local structure from its two nearest
   neighbours: their distances, the directions to them relative to the
   minutia's own direction, and their directions relative to it (as in
   Jiang and Yau, ICPR 2000).
2. Every (a, b) pair of minutiae is scored by how well the structures agree;
   the ``HYPOTHESES`` best pairs each propose an alignment: the rotation that
   turns a's direction into b's and the translation that puts a on b.
3. Under each alignment the minutiae are paired closest first, each at
   most once, within loose tolerances; a least-squares rigid fit
   (2-D Procrustes) to those pairs refines the alignment, which one
   minutia's direction fixes only roughly; then they are paired again
   within ``R_TOL`` mm and ``A_TOL`` radians. The best alignment's count is
   the score.

The score (paired count) is invariant to rotation and translation of either
input, because every alignment comes from the minutiae themselves, and it is
exactly symmetric: the pair is always matched in a canonical order. Types
(ending, bifurcation) are ignored, as extraction flips them often.
``normalised`` scores are paired^2 / (n_a n_b), in [0, 1].
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

R_TOL = 0.9          # mm: about 12 pixels at 500 ppi, after refinement
A_TOL = np.deg2rad(20.0)
COARSE_R_TOL = 1.5   # mm, first pairing around the anchor pair
COARSE_A_TOL = np.deg2rad(25.0)
HYPOTHESES = 12
_LOCAL_D_TOL = 0.6   # mm, local structure distance tolerance
_LOCAL_A_TOL = np.deg2rad(20.0)
_TWO_PI = 2.0 * np.pi


@njit(cache=True, inline="always")
def _adiff(a: float, b: float) -> float:
    # smallest absolute difference of two angles in [0, 2 pi), in [0, pi];
    # branches, not float modulo: this is the innermost comparison
    d = abs(a - b)
    return d if d <= np.pi else _TWO_PI - d


@njit(cache=True, inline="always")
def _wrap(a: float) -> float:
    while a < 0.0:
        a += _TWO_PI
    while a >= _TWO_PI:
        a -= _TWO_PI
    return a


@njit(cache=True)
def _local(m: np.ndarray, n: int) -> np.ndarray:
    # (6, n): d1, d2, alpha1, alpha2, beta1, beta2 of the two nearest
    # neighbours, one row per quantity so that scans over minutiae are
    # unit-stride (and vectorise)
    out = np.full((6, n), 1e9)
    for i in range(n):
        b1 = -1
        b2 = -1
        d1 = np.inf
        d2 = np.inf
        for j in range(n):
            if j == i:
                continue
            dx = m[j, 0] - m[i, 0]
            dy = m[j, 1] - m[i, 1]
            d = dx * dx + dy * dy
            if d < d1:
                d2, b2 = d1, b1
                d1, b1 = d, j
            elif d < d2:
                d2, b2 = d, j
        for k, (d, j) in enumerate(((d1, b1), (d2, b2))):
            if j < 0:
                continue
            dx = m[j, 0] - m[i, 0]
            dy = m[j, 1] - m[i, 1]
            out[k, i] = np.sqrt(d)
            out[2 + k, i] = _wrap(np.arctan2(dy, dx) - m[i, 2])
            out[4 + k, i] = _wrap(m[j, 2] - m[i, 2])
    return out


@njit(cache=True)
def _pair(a: np.ndarray, na: int, b: np.ndarray, nb: int, rot: float, tx: float,
          ty: float, r_tol: float, a_tol: float, pa: np.ndarray, pb: np.ndarray,
          used: np.ndarray, used_a: np.ndarray, ci: np.ndarray, cj: np.ndarray,
          cd: np.ndarray) -> int:
    # Pair minutiae under (rot, tx, ty): all (i, j) within tolerance are
    # accepted closest first, each minutia at most once. Closest-first (not
    # input order) keeps the result independent of how either set is
    # ordered, hence of rotation. b is sorted by x, so only the slice within
    # r_tol of each transformed x is visited. Pairs are written to pa, pb.
    c = np.cos(rot)
    s = np.sin(rot)
    r2 = r_tol * r_tol
    cap = ci.shape[0]
    m = 0
    for i in range(na):
        x = c * a[i, 0] - s * a[i, 1] + tx
        y = s * a[i, 0] + c * a[i, 1] + ty
        t = _wrap(a[i, 2] + rot)
        lo = 0
        hi = nb
        while lo < hi:  # first b with x >= x - r_tol
            mid = (lo + hi) // 2
            if b[mid, 0] < x - r_tol:
                lo = mid + 1
            else:
                hi = mid
        for j in range(lo, nb):
            dx = b[j, 0] - x
            if dx > r_tol:
                break
            dy = b[j, 1] - y
            d = dx * dx + dy * dy
            if d <= r2 and _adiff(b[j, 2], t) <= a_tol and m < cap:
                ci[m] = i
                cj[m] = j
                cd[m] = d
                m += 1
    order = np.argsort(cd[:m], kind="mergesort")
    used[:nb] = False
    used_a[:na] = False
    count = 0
    for k in order:
        i = ci[k]
        j = cj[k]
        if used_a[i] or used[j]:
            continue
        used_a[i] = True
        used[j] = True
        pa[count] = i
        pb[count] = j
        count += 1
    return count


@njit(cache=True)
def _refine(a: np.ndarray, b: np.ndarray, pa: np.ndarray, pb: np.ndarray, k: int) -> tuple:
    # least-squares rigid transform (2-D Procrustes) of the k pairs
    mxa = 0.0
    mya = 0.0
    mxb = 0.0
    myb = 0.0
    for t in range(k):
        mxa += a[pa[t], 0]
        mya += a[pa[t], 1]
        mxb += b[pb[t], 0]
        myb += b[pb[t], 1]
    mxa /= k
    mya /= k
    mxb /= k
    myb /= k
    sxx = 0.0
    sxy = 0.0
    for t in range(k):
        ax = a[pa[t], 0] - mxa
        ay = a[pa[t], 1] - mya
        bx = b[pb[t], 0] - mxb
        by = b[pb[t], 1] - myb
        sxx += ax * bx + ay * by
        sxy += ax * by - ay * bx
    rot = np.arctan2(sxy, sxx)
    c = np.cos(rot)
    s = np.sin(rot)
    return rot, mxb - (c * mxa - s * mya), myb - (s * mxa + c * mya)


@njit(cache=True)
def _prepare(m: np.ndarray, n: int) -> tuple:
    # rows sorted by x (the pairing's window search needs it) and their
    # local structures: computed once per template, not once per comparison
    ms = m[:n][np.argsort(m[:n, 0], kind="mergesort")].copy()
    return ms, _local(ms, n)


@njit(cache=True)
def _match_ordered(a: np.ndarray, la: np.ndarray, na: int, b: np.ndarray,
                   lb: np.ndarray, nb: int) -> int:
    if na < 2 or nb < 2:
        return 0
    hs = np.full(HYPOTHESES, 0.0)
    hi = np.zeros(HYPOTHESES, dtype=np.int64)
    hj = np.zeros(HYPOTHESES, dtype=np.int64)
    sims = np.empty(nb)
    for i in range(na):
        # pass 1, branch-free over all b (vectorised): agreement of the
        # local structures, each neighbour scoring in [0, 1]
        for j in range(nb):
            sim = 0.0
            for k in range(2):
                wd = max(0.0, 1.0 - abs(la[k, i] - lb[k, j]) * (1.0 / _LOCAL_D_TOL))
                wa = max(0.0, 1.0 - _adiff(la[2 + k, i], lb[2 + k, j]) * (1.0 / _LOCAL_A_TOL))
                wb = max(0.0, 1.0 - _adiff(la[4 + k, i], lb[4 + k, j]) * (1.0 / _LOCAL_A_TOL))
                sim += wd * wa * wb
            sims[j] = sim
        # pass 2: keep the best HYPOTHESES pairs (rarely taken)
        for j in range(nb):
            sim = sims[j]
            if sim <= hs[HYPOTHESES - 1]:
                continue
            p = HYPOTHESES - 1
            while p > 0 and hs[p - 1] < sim:
                hs[p] = hs[p - 1]
                hi[p] = hi[p - 1]
                hj[p] = hj[p - 1]
                p -= 1
            hs[p] = sim
            hi[p] = i
            hj[p] = j
    used = np.empty(nb, dtype=np.bool_)
    used_a = np.empty(na, dtype=np.bool_)
    pa = np.empty(min(na, nb), dtype=np.int64)
    pb = np.empty(min(na, nb), dtype=np.int64)
    cap = 8 * (na + nb)  # candidate pairs within tolerance (a few per minutia)
    ci = np.empty(cap, dtype=np.int64)
    cj = np.empty(cap, dtype=np.int64)
    cd = np.empty(cap)
    best = 0
    for h in range(HYPOTHESES):
        if hs[h] <= 0.0:
            break
        i = hi[h]
        j = hj[h]
        rot = b[j, 2] - a[i, 2]
        c = np.cos(rot)
        s = np.sin(rot)
        tx = b[j, 0] - (c * a[i, 0] - s * a[i, 1])
        ty = b[j, 1] - (s * a[i, 0] + c * a[i, 1])
        # coarse pairing around the anchor, least-squares refit, strict pairing
        k = _pair(a, na, b, nb, rot, tx, ty, COARSE_R_TOL, COARSE_A_TOL, pa, pb, used,
                  used_a, ci, cj, cd)
        if k <= best:
            continue  # the strict count rarely beats the loose one: skip
        if k >= 3:
            rot, tx, ty = _refine(a, b, pa, pb, k)
        k = _pair(a, na, b, nb, rot, tx, ty, R_TOL, A_TOL, pa, pb, used, used_a, ci, cj, cd)
        if k > best:
            best = k
    return best


@njit(cache=True)
def _first_is_canonical(a: np.ndarray, la: np.ndarray, na: int, b: np.ndarray,
                        lb: np.ndarray, nb: int) -> bool:
    # a fixed order for the pair, so that match(a, b) == match(b, a) exactly:
    # by size, then by a checksum of the local structures (which does not
    # change when a set is rotated or moved), then element by element
    if na != nb:
        return na < nb
    sa = 0.0
    sb = 0.0
    for i in range(na):
        sa += la[0, i] + 0.5 * la[1, i]
    for i in range(nb):
        sb += lb[0, i] + 0.5 * lb[1, i]
    if sa != sb:
        return sa < sb
    for i in range(na):
        for k in range(3):
            if a[i, k] != b[i, k]:
                return a[i, k] < b[i, k]
    return True


@njit(cache=True)
def _match_prepared(a, la, na, b, lb, nb) -> int:
    if _first_is_canonical(a, la, na, b, lb, nb):
        return _match_ordered(a, la, na, b, lb, nb)
    return _match_ordered(b, lb, nb, a, la, na)


@njit(cache=True)
def match(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> int:
    """Paired minutiae of two sets: a (>= na, 4), b (>= nb, 4) rows (x mm,
    y mm, theta rad in [0, 2 pi), type). Symmetric, rigid-invariant."""
    pa, la = _prepare(a, na)
    pb, lb = _prepare(b, nb)
    return _match_prepared(pa, la, na, pb, lb, nb)


@njit(cache=True, parallel=True)
def _prepare_all(t: np.ndarray, n: np.ndarray) -> tuple:
    sorted_t = np.zeros_like(t)
    local = np.full((t.shape[0], 6, t.shape[1]), 1e9)
    for i in prange(t.shape[0]):
        ms, loc = _prepare(t[i], n[i])
        sorted_t[i, :n[i]] = ms
        local[i, :, :n[i]] = loc
    return sorted_t, local


@njit(cache=True, parallel=True)
def match_many(ta: np.ndarray, na: np.ndarray, tb: np.ndarray, nb: np.ndarray,
               ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Paired counts (P,) for template pairs (ta[ia[p]], tb[ib[p]]).

    ta (A, M, 4) padded minutiae with counts na (A,); tb likewise; ia, ib
    (P,) indexes. A count of 0 (an absent finger) scores 0. Each template is
    prepared once, however many pairs it is in."""
    sa, la = _prepare_all(ta, na)
    sb, lb = _prepare_all(tb, nb)
    out = np.zeros(ia.shape[0], dtype=np.int64)
    for p in prange(ia.shape[0]):
        a = ia[p]
        b = ib[p]
        out[p] = _match_prepared(sa[a], la[a], na[a], sb[b], lb[b], nb[b])
    return out


def normalised(paired: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """paired^2 / (na nb), 0 where either set is empty."""
    den = np.asarray(na, dtype=np.float64) * np.asarray(nb, dtype=np.float64)
    return np.where(den > 0, np.asarray(paired, dtype=np.float64) ** 2 / np.maximum(den, 1), 0.0)
