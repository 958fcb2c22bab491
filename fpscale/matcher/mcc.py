"""1:1 minutiae matching with Minutia Cylinder-Code (MCC), in numba.

The algorithm is that of Cappelli, Ferrara and Maltoni, "Minutia
Cylinder-Code: a new representation and matching technique for fingerprint
recognition", IEEE TPAMI 32(12), 2010, in its bit-based form (the paper's
MCC16b), with the consolidation it calls Local Similarity Sort with
Relaxation (LSSR):

1. Cylinder. Around each minutia m, a cylinder of base radius R and height
   2 pi is cut into NS x NS x ND cells in m's own frame (rotated with m's
   direction). Every other minutia t within 3 sigma_S of a cell's centre
   adds a spatial contribution, a Gaussian of its distance to the centre
   (sigma_S), times a directional one, the integral over the cell's
   direction bin of a Gaussian (sigma_D) centred on t's direction relative
   to m's. The sum is thresholded at mu_psi (the limit of the paper's
   sigmoid Psi as a step, which gives the bit-based cylinder).
2. Validity. A cell is valid when its centre lies within R of m and within
   omega of the convex hull of the template's minutiae; a cylinder is kept
   only if at least min_VC of its in-disc cells are valid and at least min_M
   other minutiae lie within R + 3 sigma_S.
3. Local similarity of two cylinders a, b: 0 if the directions of their
   minutiae differ by more than delta_theta, or if fewer than min_ME of the
   in-disc cells are valid in both; else 1 - ||a' xor b'|| / (||a'|| +
   ||b'||), where a' and b' are the bits of the cells valid in both and the
   norm of a bit vector is the square root of its popcount.
4. Consolidation (LSSR). The n_R = min(n_A, n_B) best pairs by local
   similarity are taken (each minutia at most once, best first), and their
   similarities are relaxed n_rel times: each pair keeps w_R of its value and
   gains (1 - w_R) times the mean of the others' values weighted by how well
   the pairs agree geometrically (rho: distance, direction difference and
   radial angle between the two minutiae of each side, each through a
   sigmoid). The n_P pairs whose value fell least (efficiency = relaxed /
   initial) are kept, and the score is the mean of their relaxed values, in
   [0, 1]; n_P grows from min_nP to max_nP with min(n_A, n_B) through a
   sigmoid (mu_P, tau_P).

Parameters are the paper's published values (its Table of parameters for
the bit-based MCC with LSSR), given there in pixels at 500 ppi and converted
here to millimetres (``PX_PER_MM``): R = 70 px, NS = 16, ND = 6,
sigma_S = 28/3 px, sigma_D = 2 pi / 9, mu_psi = 1/100, omega = 50 px,
min_VC = 0.75, min_M = 2, min_ME = 0.60, delta_theta = pi / 2, min_nP = 4,
max_nP = 12, mu_P = 20, tau_P = 2/5, w_R = 1/2, n_rel = 5, mu_rho =
(5 px, pi/12, pi/12), tau_rho = (-8/5 per px, -30, -30). The spatial
Gaussian keeps its normalisation 1 / (sigma_S sqrt(2 pi)) with sigma_S in
pixels, so that mu_psi keeps its meaning.

Choices of fpscale's own, where the paper leaves room: the LSSR pairs are
chosen greedily, each minutia at most once; min_ME counts cells against the
in-disc cells of one cylinder; the directional integral and the spatial
Gaussian come from tables (linear interpolation, error under 1e-6); n_A and n_B are the
numbers of valid cylinders. Types (ending, bifurcation) are not used, as in
the paper.

Scores are exactly symmetric (the pair is matched in a canonical order) and
invariant to translation. delta_theta (the paper's prior that captures are
upright) makes them change a little under rotation; with delta_theta = pi
(an argument of the scoring functions) they are invariant to any rotation,
up to cells whose value lies on the threshold. ``prepare`` computes a template's cylinders once; ``match_many``
prepares each template of a batch once, however many pairs it is in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from fpscale.matcher.exact import popcount64

PX_PER_MM = 500.0 / 25.4

# Published values (Cappelli, Ferrara, Maltoni 2010), pixels at 500 ppi ...
R_PX = 70.0
NS = 16
ND = 6
SIGMA_S_PX = 28.0 / 3.0
SIGMA_D = 2.0 * np.pi / 9.0
MU_PSI = 0.01
TAU_PSI = 400.0
OMEGA_PX = 50.0
MIN_VC = 0.75
MIN_M = 2
MIN_ME = 0.60
DELTA_THETA = np.pi / 2.0
MIN_NP = 4
MAX_NP = 12
MU_P = 20.0
TAU_P = 0.4
W_R = 0.5
N_REL = 5
MU_RHO1_PX = 5.0
TAU_RHO1_PX = -8.0 / 5.0
MU_RHO2 = np.pi / 12.0
TAU_RHO2 = -30.0
MU_RHO3 = np.pi / 12.0
TAU_RHO3 = -30.0

# ... and in millimetres
R = R_PX / PX_PER_MM                      # 3.56 mm
SIGMA_S = SIGMA_S_PX / PX_PER_MM          # 0.47 mm
OMEGA = OMEGA_PX / PX_PER_MM              # 2.54 mm
DELTA_S = 2.0 * R / NS                    # cell side, 0.44 mm
DELTA_D = 2.0 * np.pi / ND                # direction bin, 60 degrees
MU_RHO1 = MU_RHO1_PX / PX_PER_MM          # 0.25 mm
TAU_RHO1 = TAU_RHO1_PX * PX_PER_MM        # -31.5 per mm
G_NORM = 1.0 / (SIGMA_S_PX * math.sqrt(2.0 * math.pi))

WORDS = NS * NS // 64                     # 64-bit words per direction layer
CYL_WORDS = ND * WORDS                    # words per cylinder
_TWO_PI = 2.0 * np.pi
_CENTRE = (NS - 1) / 2.0                  # cell (i, j) centre at ((i, j) - _CENTRE) DELTA_S


def _in_disc() -> np.ndarray:
    i = np.arange(NS) - _CENTRE
    return (i[:, None] ** 2 + i[None, :] ** 2) * DELTA_S ** 2 <= R ** 2


IN_DISC = _in_disc()                      # (NS, NS) cells whose centre is within R
_IN_DISC_FLAT = IN_DISC.ravel().copy()
DISC_CELLS = int(IN_DISC.sum())
_DISC_BITS = np.zeros(WORDS, dtype=np.uint64)
for _c in np.flatnonzero(IN_DISC.ravel()):
    _DISC_BITS[_c >> 6] |= np.uint64(1) << np.uint64(_c & 63)
MIN_VALID_CELLS = MIN_VC * DISC_CELLS
MIN_COMMON_CELLS = MIN_ME * DISC_CELLS


def directional_contribution(beta):
    """The paper's C_D for an angle beta (rad) between a bin's centre and a
    neighbour's relative direction: the integral of a Gaussian (sigma_D)
    over [beta - DELTA_D / 2, beta + DELTA_D / 2]."""
    s = SIGMA_D * math.sqrt(2.0)
    beta = np.asarray(beta, dtype=np.float64)
    erf = np.vectorize(math.erf)
    return 0.5 * (erf((beta + DELTA_D / 2) / s) - erf((beta - DELTA_D / 2) / s))


_TABLE_N = 4096
_TABLE_STEP = _TWO_PI / _TABLE_N
def _bins_table() -> np.ndarray:
    # row q: G_NORM times the directional contributions to the ND bins
    # (lanes ND.. zero) of a neighbour at relative direction -pi + q step
    alpha = -np.pi + _TABLE_STEP * np.arange(_TABLE_N + 1)
    out = np.zeros((_TABLE_N + 1, 8))
    for k in range(ND):
        beta = (-np.pi + (k + 0.5) * DELTA_D - alpha + np.pi) % _TWO_PI - np.pi
        out[:, k] = G_NORM * directional_contribution(beta)
    return out


_BINS_TABLE = _bins_table()
# exp(-(x DELTA_S)^2 / (2 sigma_S^2)) for x (cells) in [-_GAUSS_REACH, _GAUSS_REACH]
_GAUSS_N = 8192
_GAUSS_REACH = 3.0 * SIGMA_S / DELTA_S + 1.0
_GAUSS_STEP = 2.0 * _GAUSS_REACH / _GAUSS_N
_GAUSS_TABLE = np.exp(-((-_GAUSS_REACH + _GAUSS_STEP * np.arange(_GAUSS_N + 1)) * DELTA_S) ** 2
                      / (2.0 * SIGMA_S ** 2))


@njit(cache=True, inline="always")
def _wrap_pi(a: float) -> float:
    # angle in [-pi, pi)
    while a >= np.pi:
        a -= _TWO_PI
    while a < -np.pi:
        a += _TWO_PI
    return a


@njit(cache=True)
def _convex_hull(x: np.ndarray, y: np.ndarray, n: int, hx: np.ndarray, hy: np.ndarray) -> int:
    # Andrew's monotone chain; vertices counter-clockwise in hx, hy (each
    # at least n + 1 long); returns their count (duplicate points collapse)
    if n == 0:
        return 0
    order = np.argsort(x[:n] + 1e-9 * y[:n], kind="mergesort")
    # exact lexicographic order by (x, y): fix the tie-breaks of the key
    for a in range(1, n):
        b = a
        while b > 0 and (x[order[b - 1]] > x[order[b]]
                         or (x[order[b - 1]] == x[order[b]] and y[order[b - 1]] > y[order[b]])):
            order[b - 1], order[b] = order[b], order[b - 1]
            b -= 1
    k = 0
    for t in range(n):
        p = order[t]
        while k >= 2 and ((hx[k - 1] - hx[k - 2]) * (y[p] - hy[k - 2])
                          - (hy[k - 1] - hy[k - 2]) * (x[p] - hx[k - 2])) <= 0.0:
            k -= 1
        hx[k] = x[p]
        hy[k] = y[p]
        k += 1
    lower = k + 1
    for t in range(n - 2, -1, -1):
        p = order[t]
        while k >= lower and ((hx[k - 1] - hx[k - 2]) * (y[p] - hy[k - 2])
                              - (hy[k - 1] - hy[k - 2]) * (x[p] - hx[k - 2])) <= 0.0:
            k -= 1
        hx[k] = x[p]
        hy[k] = y[p]
        k += 1
    return max(1, k - 1)  # the last point repeats the first


@njit(cache=True)
def _hull_distance(px: float, py: float, hx: np.ndarray, hy: np.ndarray, h: int) -> float:
    # distance from a point to a convex polygon (0 inside); h = 1 and 2 are
    # a point and a segment
    inside = h >= 3
    best = np.inf
    for e in range(h):
        ax = hx[e]
        ay = hy[e]
        bx = hx[(e + 1) % h]
        by = hy[(e + 1) % h]
        ex = bx - ax
        ey = by - ay
        if ex * (py - ay) - ey * (px - ax) < 0.0:
            inside = False
        ll = ex * ex + ey * ey
        u = 0.0 if ll == 0.0 else min(1.0, max(0.0, ((px - ax) * ex + (py - ay) * ey) / ll))
        dx = px - (ax + u * ex)
        dy = py - (ay + u * ey)
        best = min(best, dx * dx + dy * dy)
    return 0.0 if inside else np.sqrt(best)


@njit(cache=True, inline="always")
def _gauss_row(lo: int, hi: int, centre: float, g: np.ndarray) -> None:
    # g[x] = exp(-((x - centre) DELTA_S)^2 / (2 sigma_S^2)) for x = lo .. hi,
    # interpolated in a table (relative error under 1e-7)
    for x in range(lo, hi + 1):
        q = (x - centre + _GAUSS_REACH) * (1.0 / _GAUSS_STEP)
        q0 = min(int(q), _GAUSS_N - 1)
        f = q - q0
        g[x] = _GAUSS_TABLE[q0] + f * (_GAUSS_TABLE[q0 + 1] - _GAUSS_TABLE[q0])


_ROW = 8                                  # cells a neighbour reaches in one row, at most (7)


@njit(cache=True)
def _cylinder_values(m: np.ndarray, n: int, i: int, v: np.ndarray, gx: np.ndarray,
                     gy: np.ndarray, cd: np.ndarray, nbr: np.ndarray) -> int:
    # The sums of contributions (before the threshold) of minutia i's
    # cylinder into v (NS * NS * 8,): cell a * NS + b, direction bin k at
    # 8 (a * NS + b) + k (lanes ND.. stay 0, so that one cell is one vector). Returns
    # the count of other minutiae within R + 3 sigma_S (those that can
    # contribute). gx (NS,), gy (NS * 8,), cd (_ROW * 8,), nbr (>= n,): scratch.
    #
    # Each cell's sum adds its neighbours' contributions in index order.
    # A neighbour's contributions to the cells of one row are added in one
    # loop over the row's cells and bins (its Gaussian factors in gy and its
    # directional ones in cd repeated per cell, so that the loop is unit
    # stride and vectorises; indexes are unsigned, so that numba adds no
    # wraparound selects that would stop it).
    v[:] = 0.0
    xi = m[i, 0]
    yi = m[i, 1]
    c = np.cos(m[i, 2])
    s = np.sin(m[i, 2])
    reach2 = (R + 3.0 * SIGMA_S) ** 2
    lim = 3.0 * SIGMA_S / DELTA_S        # neighbourhood radius in cells
    lim2 = lim * lim
    # the minutiae within reach, in index order, without a branch per minutia
    near = 0
    for t in range(n):
        dx = m[t, 0] - xi
        dy = m[t, 1] - yi
        nbr[near] = t
        near += (not (dx * dx + dy * dy > reach2)) & (t != i)
    for p in range(near):
        t = nbr[p]
        dx = m[t, 0] - xi
        dy = m[t, 1] - yi
        # t in i's frame, in cell units from cell (0, 0)'s centre
        u = (c * dx + s * dy) / DELTA_S + _CENTRE
        w = (-s * dx + c * dy) / DELTA_S + _CENTRE
        a_lo = max(0, int(np.ceil(u - lim)))
        a_hi = min(NS - 1, int(np.floor(u + lim)))
        b_lo = max(0, int(np.ceil(w - lim)))
        b_hi = min(NS - 1, int(np.floor(w + lim)))
        if a_lo > a_hi or b_lo > b_hi:
            continue
        # directional contributions of t to the ND bins, interpolated in
        # a table of t's direction relative to i's
        q = (_wrap_pi(m[t, 2] - m[i, 2]) + np.pi) * (1.0 / _TABLE_STEP)
        q0 = min(int(q), _TABLE_N - 1)
        f = q - q0
        for k in range(8):
            x0 = _BINS_TABLE[q0, k]
            cd[np.uint64(k)] = x0 + f * (_BINS_TABLE[q0 + 1, k] - x0)
        for j in range(8, _ROW * 8):
            cd[np.uint64(j)] = cd[np.uint64(j - 8)]
        # the spatial Gaussian is separable: exp(-(da^2 + db^2) / 2 s^2)
        _gauss_row(a_lo, a_hi, u, gx)
        for x in range(b_lo, b_hi + 1):
            qq = (x - w + _GAUSS_REACH) * (1.0 / _GAUSS_STEP)
            qq0 = min(int(qq), _GAUSS_N - 1)
            ff = qq - qq0
            g = _GAUSS_TABLE[qq0] + ff * (_GAUSS_TABLE[qq0 + 1] - _GAUSS_TABLE[qq0])
            for k in range(8):
                gy[np.uint64(x * 8 + k)] = g
        for a in range(a_lo, a_hi + 1):
            r2 = lim2 - (a - u) * (a - u)  # cells within 3 sigma_S of t
            if r2 < 0.0:
                continue
            r = np.sqrt(r2)
            lo = max(b_lo, int(np.ceil(w - r)))
            hi = min(b_hi, int(np.floor(w + r)))
            ga = gx[a]
            st = (a * NS + lo) * 8
            g0 = lo * 8
            for j in range((hi - lo + 1) * 8):
                v[np.uint64(st + j)] += (ga * gy[np.uint64(g0 + j)]) * cd[np.uint64(j)]
    return near


_OMEGA_SURE2 = (OMEGA - 1e-9) ** 2         # squared distances surely within OMEGA
_EDGE_SURE = 1e-3                          # edges at least this long (mm) take the fast test


@njit(cache=True)
def _cell_validity(m: np.ndarray, i: int, hx: np.ndarray, hy: np.ndarray, h: int,
                   hl: np.ndarray, edges: np.ndarray, lines: np.ndarray,
                   valid: np.ndarray) -> int:
    # valid (NS * NS,): in the disc and within OMEGA of the convex hull
    # (hx, hy, h vertices counter-clockwise, hl (h,) their edges' lengths).
    # Returns the number of valid cells. Only hull edges whose line passes
    # within R of the minutia can put a cell outside (or decide its
    # distance), so only those are visited; when none passes within
    # R - OMEGA, every in-disc cell is valid. edges (>= h,), lines
    # (6, >= h): scratch.
    xi = m[i, 0]
    yi = m[i, 1]
    ne = 0
    near = False
    if h >= 3:
        for e in range(h):
            ex = hx[(e + 1) % h] - hx[e]
            ey = hy[(e + 1) % h] - hy[e]
            ll = hl[e]
            if ll == 0.0:
                continue
            # signed distance of the minutia outside the edge's line
            sd = (ey * (xi - hx[e]) - ex * (yi - hy[e])) / ll
            if sd > -R:
                edges[ne] = e
                ne += 1
                if sd > -(R - OMEGA):
                    near = True
    else:
        near = True
    c = np.cos(m[i, 2])
    s = np.sin(m[i, 2])
    count = 0
    lin = lines[0]
    la = lines[1]
    lb = lines[2]
    lu = lines[3]
    lau = lines[4]
    lbu = lines[5]
    if h >= 3 and near:
        # each edge's signed distance is linear in the cell indexes:
        # lin[q] + la[q] a + lb[q] b; a cell inside every relevant edge is
        # inside the hull, one farther than OMEGA outside an edge is farther
        # than OMEGA from the hull, and only the cells between need more. So
        # is the position along the edge, in edge lengths: lu[q] + lau[q] a
        # + lbu[q] b
        for q in range(ne):
            e = edges[q]
            ex = hx[(e + 1) % h] - hx[e]
            ey = hy[(e + 1) % h] - hy[e]
            ll = hl[e]
            nx = ey / ll
            ny = -ex / ll
            la[q] = (nx * c + ny * s) * DELTA_S
            lb[q] = (-nx * s + ny * c) * DELTA_S
            lin[q] = nx * (xi - hx[e]) + ny * (yi - hy[e]) - _CENTRE * (la[q] + lb[q])
            lau[q] = (-ny * c + nx * s) * DELTA_S / ll
            lbu[q] = (ny * s + nx * c) * DELTA_S / ll
            lu[q] = (-ny * (xi - hx[e]) + nx * (yi - hy[e])) / ll - _CENTRE * (lau[q] + lbu[q])
    for a in range(NS):
        for b in range(NS):
            ok = _IN_DISC_FLAT[a * NS + b]
            if ok and near:
                if h >= 3:
                    worst = -np.inf
                    qs = 0
                    for q in range(ne):
                        d = lin[q] + la[q] * a + lb[q] * b
                        if d > worst:
                            worst = d
                            qs = q
                    if worst > OMEGA:
                        ok = False
                    elif worst > 0.0:
                        # The distance to the hull is at most that to the
                        # segment of the edge farthest outside: its line
                        # distance (worst), or the distance to its nearer end
                        # when the cell is beyond one. When that bound is
                        # within OMEGA by far more than rounding, the cell is
                        # valid; else the exact distance decides, as before.
                        sure = False
                        ll = hl[edges[qs]]
                        if ll >= _EDGE_SURE:
                            u = lu[qs] + lau[qs] * a + lbu[qs] * b
                            over = max(0.0, max(-u, u - 1.0)) * ll
                            sure = worst * worst + over * over <= _OMEGA_SURE2
                        if not sure:
                            ox = (a - _CENTRE) * DELTA_S
                            oy = (b - _CENTRE) * DELTA_S
                            ok = _edges_distance(xi + c * ox - s * oy, yi + s * ox + c * oy,
                                                 hx, hy, h, edges, ne) <= OMEGA
                else:
                    ox = (a - _CENTRE) * DELTA_S
                    oy = (b - _CENTRE) * DELTA_S
                    ok = _hull_distance(xi + c * ox - s * oy, yi + s * ox + c * oy, hx, hy, h) <= OMEGA
            valid[a * NS + b] = ok
            count += ok
    return count


@njit(cache=True)
def _edges_distance(px: float, py: float, hx: np.ndarray, hy: np.ndarray, h: int,
                    edges: np.ndarray, ne: int) -> float:
    # distance from a point within R of a minutia to a convex polygon, from
    # the edges whose lines pass within R of that minutia: the point lies
    # outside the polygon only if it is outside one of them, and then its
    # nearest boundary point lies on one of them
    outside = False
    best = np.inf
    for q in range(ne):
        e = edges[q]
        ax = hx[e]
        ay = hy[e]
        ex = hx[(e + 1) % h] - ax
        ey = hy[(e + 1) % h] - ay
        if ex * (py - ay) - ey * (px - ax) < 0.0:
            outside = True
        ll = ex * ex + ey * ey
        u = min(1.0, max(0.0, ((px - ax) * ex + (py - ay) * ey) / ll))
        dx = px - (ax + u * ex)
        dy = py - (ay + u * ey)
        best = min(best, dx * dx + dy * dy)
    return np.sqrt(best) if outside else 0.0


@njit(cache=True)
def _work(m: np.ndarray, n: int) -> tuple:
    # a template's convex hull (hx, hy, h points) and the work arrays that
    # building its cylinders needs
    hx = np.empty(n + 2)
    hy = np.empty(n + 2)
    h = _convex_hull(m[:, 0].copy(), m[:, 1].copy(), n, hx, hy)
    hl = np.zeros(n + 2)
    for e in range(h):
        ex = hx[(e + 1) % h] - hx[e]
        ey = hy[(e + 1) % h] - hy[e]
        hl[e] = np.sqrt(ex * ex + ey * ey)
    return (hx, hy, h, hl, np.empty(n + 2, dtype=np.int64), np.empty((6, n + 2)),
            np.empty(NS * NS * 8),
            np.empty(NS * NS, dtype=np.bool_), np.empty(NS), np.empty(NS * 8),
            np.empty(_ROW * 8), np.empty(n + 1, dtype=np.int64))


@njit(cache=True)
def cylinder_values(m: np.ndarray, n: int) -> tuple:
    """The float cylinders of a template, for checks and study: (values
    (n, ND, NS, NS) sums of contributions before the threshold, cell
    validity (n, NS, NS), cylinder validity (n,)). m (>= n, 3+) rows (x mm,
    y mm, direction rad). Values are complete in the disc (the cells that
    can be valid); the corner cells outside it miss far neighbours."""
    vals = np.zeros((n, ND, NS, NS))
    cells = np.zeros((n, NS, NS), dtype=np.bool_)
    ok = np.zeros(n, dtype=np.bool_)
    hx, hy, h, hl, edges, lines, v, valid, gx, gy, cd, nbr = _work(m, n)
    for i in range(n):
        near = _cylinder_values(m, n, i, v, gx, gy, cd, nbr)
        count = _cell_validity(m, i, hx, hy, h, hl, edges, lines, valid)
        for a in range(NS):
            for b in range(NS):
                cells[i, a, b] = valid[a * NS + b]
                for k in range(ND):
                    vals[i, k, a, b] = v[(a * NS + b) * 8 + k]
        ok[i] = count >= MIN_VALID_CELLS and near >= MIN_M
    return vals, cells, ok


@njit(cache=True)
def _pack(v: np.ndarray, valid: np.ndarray, flags: np.ndarray, tb: np.ndarray,
          tm: np.ndarray) -> None:
    # One cylinder's bits: tb (CYL_WORDS,) bit q of word k * WORDS + w set
    # when cell 64 w + q is valid and its value in bin k reaches MU_PSI, tm
    # (WORDS,) the valid cells. No branch per bit: the thresholds are taken
    # in one vectorised pass into flags (NS * NS * 8,) (a byte per cell and
    # bin, scratch), and the eight bytes of a cell, read as one word, are
    # merged eight cells at a time, so that byte k of the merge holds bin
    # k's bits of those eight cells.
    for j in range(NS * NS * 8):
        flags[j] = v[j] >= MU_PSI
    cw = flags.view(np.uint64)
    for w in range(WORDS):
        mk = np.uint64(0)
        for q in range(64):
            mk |= np.uint64(valid[w * 64 + q]) << np.uint64(q)
        tm[w] = mk
        for k in range(ND):
            tb[k * WORDS + w] = 0
        for g in range(8):
            x = np.uint64(0)
            for j in range(8):
                x |= cw[w * 64 + g * 8 + j] << np.uint64(j)
            for k in range(ND):
                tb[k * WORDS + w] |= ((x >> np.uint64(8 * k)) & np.uint64(0xFF)) << np.uint64(8 * g)
        for k in range(ND):
            tb[k * WORDS + w] &= mk


@njit(cache=True)
def _prepare_one(m: np.ndarray, n: int, bits: np.ndarray, mask: np.ndarray, pts: np.ndarray,
                 cnt: np.ndarray) -> tuple:
    # Bit cylinders of the valid cylinders of one template, compacted and
    # stored one cylinder per row, so that scoring reads each cylinder's
    # words contiguously: bits (>= n, CYL_WORDS), mask (>= n, WORDS) the valid cells,
    # pts (>= n, 5) their minutiae (x, y, direction, cos, sin), cnt (2, >= n)
    # their popcounts and numbers of valid cells. Cylinders whose in-disc
    # cells are all valid ("full") come first, in input order, then the
    # others. Returns (valid cylinders, full cylinders).
    hx, hy, h, hl, edges, lines, v, valid, gx, gy, cd, nbr = _work(m, n)
    flags = np.empty(NS * NS * 8, dtype=np.uint8)
    tb = np.zeros((n, CYL_WORDS), dtype=np.uint64)
    tm = np.zeros((n, WORDS), dtype=np.uint64)
    cells = np.zeros(n, dtype=np.int64)
    keep = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        count = _cell_validity(m, i, hx, hy, h, hl, edges, lines, valid)
        if count < MIN_VALID_CELLS:
            continue
        near = _cylinder_values(m, n, i, v, gx, gy, cd, nbr)
        if near < MIN_M:
            continue
        keep[i] = True
        cells[i] = count
        _pack(v, valid, flags, tb[i], tm[i])
    out = 0
    full = 0
    for phase in range(2):
        for i in range(n):
            if not keep[i] or (cells[i] == DISC_CELLS) != (phase == 0):
                continue
            pop = 0
            for w in range(CYL_WORDS):
                bits[out, w] = tb[i, w]
                pop += popcount64(tb[i, w])
            for w in range(WORDS):
                mask[out, w] = tm[i, w]
            cnt[0, out] = pop
            cnt[1, out] = cells[i]
            pts[out, 0] = m[i, 0]
            pts[out, 1] = m[i, 1]
            pts[out, 2] = m[i, 2]
            pts[out, 3] = np.cos(m[i, 2])
            pts[out, 4] = np.sin(m[i, 2])
            out += 1
        if phase == 0:
            full = out
    return out, full


@njit(cache=True, parallel=True)
def prepare(t: np.ndarray, n: np.ndarray) -> tuple:
    """Cylinders of a batch of templates t (T, M, 3+) with counts n (T,):
    a tuple (bits (T, K, CYL_WORDS) uint64, mask (T, K, WORDS) uint64 of
    valid cells, pts (T, K, 5) float64 (x, y, direction, cos, sin),
    cnt (T, 2, K) int64 (popcount, valid cells), counts (T,) int64 valid
    cylinders, full (T,) int64 cylinders whose in-disc cells are all valid,
    stored first), K = max(n, 1): a template's p-th valid cylinder is row
    p of its bits, mask and pts, column p of its cnt. Bit q of word
    k * WORDS + w is cell (a, b) = divmod(64 w + q, NS) of direction bin k."""
    T = t.shape[0]
    K = 1
    for a in range(T):
        K = max(K, n[a])
    bits = np.zeros((T, K, CYL_WORDS), dtype=np.uint64)
    mask = np.zeros((T, K, WORDS), dtype=np.uint64)
    pts = np.zeros((T, K, 5))
    cnt = np.zeros((T, 2, K), dtype=np.int64)
    counts = np.zeros(T, dtype=np.int64)
    full = np.zeros(T, dtype=np.int64)
    for a in prange(T):
        counts[a], full[a] = _prepare_one(t[a], n[a], bits[a], mask[a], pts[a], cnt[a])
    return bits, mask, pts, cnt, counts, full


@njit(cache=True, inline="always")
def _sigmoid(v: float, mu: float, tau: float) -> float:
    return 1.0 / (1.0 + np.exp(-tau * (v - mu)))


_SQRT = np.sqrt(np.arange(CYL_WORDS * 64 + 1, dtype=np.float64))


@njit(cache=True)
def local_similarity(ba: np.ndarray, ma: np.ndarray, ta: float, bb: np.ndarray,
                     mb: np.ndarray, tb: float) -> float:
    """Similarity of two bit cylinders (bits (CYL_WORDS,), valid cells
    (WORDS,), minutia direction rad): 0 when not matchable, else in
    [0, 1]. One pair at a time (the batch kernel scores a row at once)."""
    if abs(_wrap_pi(ta - tb)) > DELTA_THETA:
        return 0.0
    common = 0
    for w in range(WORDS):
        common += popcount64(ma[w] & mb[w])
    if common < MIN_COMMON_CELLS:
        return 0.0
    na = 0
    nb = 0
    nx = 0
    for k in range(ND):
        for w in range(WORDS):
            x = ba[k * WORDS + w]
            y = bb[k * WORDS + w]
            na += popcount64(x & mb[w])
            nb += popcount64(y & ma[w])
            nx += popcount64((x ^ y) & ma[w] & mb[w])
    if na + nb == 0:
        return 0.0
    return 1.0 - np.sqrt(nx) / (np.sqrt(na) + np.sqrt(nb))


@njit(cache=True)
def _similarity_row(ba, ma, pa, ia, i, full_a, b, nb, full_b, cos_dt, out) -> None:
    # Local similarities of cylinder i of a against all nb cylinders of b
    # into out (nb,); b: b's bits, mask, pts and cnt as ``prepare`` gives
    # them. The direction test comes
    # first, so that the pairs it rejects (about half when delta_theta is
    # pi / 2) cost no popcount; the others sum over two cylinders'
    # contiguous words. With x, y two cylinders' bits and m, n their valid
    # cells (x within m, y within n), the bits valid in both are x & n and
    # y & m, and
    #     popcount((x & n) ^ (y & m)) = |x & n| + |y & m| - 2 |x & y|,
    # where |x & n| = |x| when n is full (all in-disc cells valid) and
    # |y & m| = |y| when m is: most cylinders are full, so most pairs
    # need one popcount a word.
    bt, mt, pb, ib = b
    xa = ba[i]
    xm = ma[i]
    i_full = i < full_a
    pop_a = ia[0, i]
    c = pa[i, 3]
    s = pa[i, 4]
    for j in range(nb):
        out[j] = 0.0
        # directions within delta_theta: cos(ta - tb) >= cos(delta_theta)
        if c * pb[j, 3] + s * pb[j, 4] < cos_dt:
            continue
        if i_full:
            if ib[1, j] < MIN_COMMON_CELLS:
                continue
            cb = ib[0, j]
        else:
            common = 0
            for w in range(WORDS):
                common += popcount64(xm[w] & mt[j, w])
            if common < MIN_COMMON_CELLS:
                continue
            cb = 0
            for k in range(ND):
                for w in range(WORDS):
                    cb += popcount64(bt[j, k * WORDS + w] & xm[w])
        if j < full_b:
            ca = pop_a
        else:
            ca = 0
            for k in range(ND):
                for w in range(WORDS):
                    ca += popcount64(xa[k * WORDS + w] & mt[j, w])
        if ca + cb == 0:
            continue
        cand = 0
        for w in range(CYL_WORDS):
            cand += popcount64(xa[w] & bt[j, w])
        out[j] = 1.0 - _SQRT[ca + cb - 2 * cand] / (_SQRT[ca] + _SQRT[cb])


_BINS = 1024


@njit(cache=True)
def _select_pairs(lam: np.ndarray, li: np.ndarray, lj: np.ndarray, count: int, na: int,
                  nb: int, want: int, si: np.ndarray, sj: np.ndarray, sv: np.ndarray) -> int:
    # Greedy one-to-one choice of up to `want` pairs, highest similarity
    # first (ties in enumeration order): a bucket sort by value, each
    # bucket ordered only when reached. The buckets split the range of the
    # values at hand (not [0, 1], where the values crowd into a few
    # buckets), and the values travel with their indexes, so that the
    # ordering of a bucket reads them in place. A bucket's key only falls
    # as the value grows, so that the order is the same.
    if count == 0:
        return 0
    lo_v = lam[0]
    hi_v = lam[0]
    for p in range(count):
        lo_v = min(lo_v, lam[p])
        hi_v = max(hi_v, lam[p])
    scale = _BINS / (hi_v - lo_v) if hi_v - lo_v > 1e-12 else 0.0
    head = np.zeros(_BINS + 1, dtype=np.int64)
    key = np.empty(count, dtype=np.int64)
    for p in range(count):
        key[p] = _BINS - 1 - min(int((lam[p] - lo_v) * scale), _BINS - 1)  # descending
    for p in range(count):
        head[key[p] + 1] += 1
    for q in range(_BINS):
        head[q + 1] += head[q]
    order = np.empty(count, dtype=np.int64)
    vals = np.empty(count)
    fill = head[:_BINS].copy()
    for p in range(count):
        f = fill[key[p]]
        order[f] = p
        vals[f] = lam[p]
        fill[key[p]] = f + 1
    used_a = np.zeros(na, dtype=np.bool_)
    used_b = np.zeros(nb, dtype=np.bool_)
    got = 0
    for q in range(_BINS):
        lo = head[q]
        hi = head[q + 1]
        # stable insertion sort of the bucket by value, descending
        for x in range(lo + 1, hi):
            vx = vals[x]
            ox = order[x]
            y = x
            while y > lo and vals[y - 1] < vx:
                vals[y] = vals[y - 1]
                order[y] = order[y - 1]
                y -= 1
            vals[y] = vx
            order[y] = ox
        for x in range(lo, hi):
            p = order[x]
            if used_a[li[p]] or used_b[lj[p]]:
                continue
            used_a[li[p]] = True
            used_b[lj[p]] = True
            si[got] = li[p]
            sj[got] = lj[p]
            sv[got] = lam[p]
            got += 1
            if got == want:
                return got
    return got


@njit(cache=True)
def _relax(pa: np.ndarray, pb: np.ndarray, si: np.ndarray, sj: np.ndarray, lam0: np.ndarray,
           ns: int, n_r: int) -> np.ndarray:
    # LSSR relaxation of the chosen pairs' similarities; returns the relaxed values.
    #
    # rho[t, k] and rho[k, t] share their distance and direction terms (the
    # differences of one are the exact negations of the other's, so that
    # both come out bit for bit the same), which are computed once per
    # unordered pair; only the radial angles are per ordered pair. The
    # relaxation sums visit only the nonzero rho (in k order): every value
    # is >= 0, so that a zero term would add nothing, not even a bit.
    rho = np.zeros((ns, ns))
    cut1 = MU_RHO1 + 12.0 / -TAU_RHO1   # beyond these a sigmoid is < 1e-5
    cut2 = MU_RHO2 + 12.0 / -TAU_RHO2
    cut3 = MU_RHO3 + 12.0 / -TAU_RHO3
    for t in range(ns):
        ax = pa[si[t], 0]
        ay = pa[si[t], 1]
        at = pa[si[t], 2]
        bx = pb[sj[t], 0]
        by = pb[sj[t], 1]
        bt = pb[sj[t], 2]
        for k in range(t + 1, ns):
            kax = pa[si[k], 0]
            kay = pa[si[k], 1]
            kat = pa[si[k], 2]
            kbx = pb[sj[k], 0]
            kby = pb[sj[k], 1]
            kbt = pb[sj[k], 2]
            dxa = kax - ax
            dya = kay - ay
            dxb = kbx - bx
            dyb = kby - by
            d1 = abs(np.sqrt(dxa * dxa + dya * dya) - np.sqrt(dxb * dxb + dyb * dyb))
            if d1 > cut1:
                continue
            d2 = abs(_wrap_pi((kat - at) - (kbt - bt)))
            if d2 > cut2:
                continue
            s12 = _sigmoid(d1, MU_RHO1, TAU_RHO1) * _sigmoid(d2, MU_RHO2, TAU_RHO2)
            # difference of the radial angles (direction of t to the line
            # from t to k), on each side
            d3 = abs(_wrap_pi((np.arctan2(dya, dxa) - at) - (np.arctan2(dyb, dxb) - bt)))
            if d3 <= cut3:
                rho[t, k] = s12 * _sigmoid(d3, MU_RHO3, TAU_RHO3)
            d3 = abs(_wrap_pi((np.arctan2(ay - kay, ax - kax) - kat)
                              - (np.arctan2(by - kby, bx - kbx) - kbt)))
            if d3 <= cut3:
                rho[k, t] = s12 * _sigmoid(d3, MU_RHO3, TAU_RHO3)
    lam = lam0[:ns].copy()
    if n_r < 2:
        return lam
    # the nonzero rho of each row, in k order
    start = np.empty(ns + 1, dtype=np.int64)
    col = np.empty(ns * ns, dtype=np.int64)
    val = np.empty(ns * ns)
    nz = 0
    for t in range(ns):
        start[t] = nz
        for k in range(ns):
            col[nz] = k
            val[nz] = rho[t, k]
            nz += rho[t, k] != 0.0
    start[ns] = nz
    nxt = np.empty(ns)
    norm = (1.0 - W_R) / (n_r - 1)
    for _ in range(N_REL):
        for t in range(ns):
            acc = 0.0
            for e in range(start[t], start[t + 1]):
                acc += val[e] * lam[col[e]]
            nxt[t] = W_R * lam[t] + norm * acc
        lam, nxt = nxt, lam
    return lam


@njit(cache=True)
def n_pairs(na: int, nb: int) -> int:
    """n_P: how many pairs the score averages, from the smaller count."""
    z = _sigmoid(float(min(na, nb)), MU_P, TAU_P)
    return MIN_NP + int(np.floor(z * (MAX_NP - MIN_NP) + 0.5))


@njit(cache=True)
def _score_ordered(ba, ma, pa, ia, na, fa, bb, mb, pb, ib, nb, fb, cos_dt) -> float:
    if na == 0 or nb == 0:
        return 0.0
    cap = na * nb
    lam = np.empty(cap)
    li = np.empty(cap, dtype=np.int64)
    lj = np.empty(cap, dtype=np.int64)
    b = (bb, mb, pb, ib)
    row = np.empty(nb)
    count = 0
    for i in range(na):
        _similarity_row(ba, ma, pa, ia, i, fa, b, nb, fb, cos_dt, row)
        for j in range(nb):
            if row[j] > 0.0:
                lam[count] = row[j]
                li[count] = i
                lj[count] = j
                count += 1
    n_r = min(na, nb)
    si = np.empty(n_r, dtype=np.int64)
    sj = np.empty(n_r, dtype=np.int64)
    sv = np.empty(n_r)
    ns = _select_pairs(lam, li, lj, count, na, nb, n_r, si, sj, sv)
    if ns == 0:
        return 0.0
    relaxed = _relax(pa, pb, si, sj, sv, ns, n_r)
    # keep the n_P pairs of highest efficiency (relaxed / initial)
    eff = np.empty(ns)
    for t in range(ns):
        eff[t] = relaxed[t] / sv[t]
    order = np.argsort(-eff, kind="mergesort")
    n_p = n_pairs(na, nb)
    total = 0.0
    for t in range(min(n_p, ns)):
        total += relaxed[order[t]]
    return min(1.0, total / n_p)


@njit(cache=True)
def _first_is_canonical(ba, pa, ia, na, bb, pb, ib, nb) -> bool:
    # a fixed order for the pair, so that the score is exactly symmetric:
    # by count, then by the cylinders' total popcount (unchanged by a rigid
    # motion), then element by element
    if na != nb:
        return na < nb
    sa = 0
    sb = 0
    for i in range(na):
        sa += ia[0, i]
        sb += ib[0, i]
    if sa != sb:
        return sa < sb
    for i in range(na):
        for k in range(3):
            if pa[i, k] != pb[i, k]:
                return pa[i, k] < pb[i, k]
    return True


@njit(cache=True)
def score_prepared(ba, ma, pa, ia, na, fa, bb, mb, pb, ib, nb, fb,
                   delta_theta: float = DELTA_THETA) -> float:
    """Score in [0, 1] of two prepared templates: for each, its bits, mask,
    pts, cnt, count and full (one template's part of what ``prepare``
    returns). delta_theta: the largest difference of two minutiae's
    directions whose cylinders can match (pi: any)."""
    cos_dt = np.cos(delta_theta) if delta_theta < np.pi else -2.0
    if _first_is_canonical(ba, pa, ia, na, bb, pb, ib, nb):
        return _score_ordered(ba, ma, pa, ia, na, fa, bb, mb, pb, ib, nb, fb, cos_dt)
    return _score_ordered(bb, mb, pb, ib, nb, fb, ba, ma, pa, ia, na, fa, cos_dt)


@njit(cache=True, parallel=True)
def score_many(pa: tuple, pb: tuple, ia: np.ndarray, ib: np.ndarray,
               delta_theta: float = DELTA_THETA) -> np.ndarray:
    """Scores (P,) of pairs (ia[p], ib[p]) of two prepared batches (what
    ``prepare`` returns); delta_theta as in ``score_prepared``."""
    ba, ma, xa, ca, na, fa = pa
    bb, mb, xb, cb, nb, fb = pb
    out = np.zeros(ia.shape[0])
    for p in prange(ia.shape[0]):
        a = ia[p]
        b = ib[p]
        out[p] = score_prepared(ba[a], ma[a], xa[a], ca[a], na[a], fa[a],
                                bb[b], mb[b], xb[b], cb[b], nb[b], fb[b], delta_theta)
    return out


@njit(cache=True)
def _used(n_templates: int, idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # counts with the templates no pair refers to set to 0 (not prepared)
    out = np.zeros(n_templates, dtype=np.int64)
    for p in range(idx.shape[0]):
        out[idx[p]] = counts[idx[p]]
    return out


def match_many(ta: np.ndarray, na: np.ndarray, tb: np.ndarray, nb: np.ndarray,
               ia: np.ndarray, ib: np.ndarray, delta_theta: float = DELTA_THETA) -> np.ndarray:
    """MCC scores (P,) float64 in [0, 1] for template pairs (ta[ia[p]],
    tb[ib[p]]), with the calling convention of ``fpscale.matcher.minutiae.match_many``.

    ta (A, M, 4) padded minutiae (x mm, y mm, direction rad, type) with
    counts na (A,); tb likewise; ia, ib (P,) indexes. A count of 0 (an
    absent finger) scores 0. Each template that a pair refers to is prepared
    once, however many pairs it is in; the others are skipped."""
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    pa = prepare(ta, _used(ta.shape[0], ia, np.asarray(na, dtype=np.int64)))
    pb = prepare(tb, _used(tb.shape[0], ib, np.asarray(nb, dtype=np.int64)))
    return score_many(pa, pb, ia, ib, delta_theta)


def match(a: np.ndarray, na: int, b: np.ndarray, nb: int, delta_theta: float = DELTA_THETA) -> float:
    """MCC score in [0, 1] of two minutiae sets (rows x mm, y mm,
    direction rad, ...), na and nb rows used."""
    one = np.zeros(1, dtype=np.int64)
    return float(match_many(a[None], np.array([na]), b[None], np.array([nb]), one, one,
                            delta_theta)[0])
