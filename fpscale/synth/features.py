"""Rigid-invariant histogram features of one impression's minutiae.

Two parts, each normalised and square-rooted (Hellinger map): a histogram of
minutia pairs over (distance, the two relative angles), and a histogram of
minutiae around the core in its own frame. Both are invariant to rotation
and translation of the print. ``fpscale.synth.embedding`` turns them into vectors
and codes; docs/encoding.md explains the design and its numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from fpscale import simd
from fpscale.synth.angles import fine_atan2, wrap_angle
from fpscale.synth.fingers import MAX_MASTER, master_finger
from fpscale.synth.impressions import MAX_IMPRESSION, impression_from_master

R_MAX = 5.0        # mm: pairs beyond this are not pooled
BAND_WIDTH = 1.0   # mm: bands of y that the pair search orders minutiae by
N_DIST = 5
N_ANGLE = 8
N_BINS = N_DIST * N_ANGLE * N_ANGLE   # pair part
R_SPATIAL = 12.0   # mm around the reference point
N_RING = 6
N_SECTOR = 12
N_DIR = 6
N_SPATIAL = N_RING * N_SECTOR * N_DIR  # reference-frame part
N_FEATURES = N_BINS + N_SPATIAL
_TWO_PI = 2.0 * np.pi


@njit(cache=True, inline="always")
def _wrap_bin(a: float, nbins: int) -> tuple:
    # (lower, upper, weight of upper) of any angle over nbins circular bins
    return _bin_wrapped(wrap_angle(a), nbins)


@njit(cache=True, inline="always")
def _bin_wrapped(a: float, nbins: int) -> tuple:
    # the same for an angle already in [0, 2 pi); shifting by a whole bin
    # keeps f >= 0 without a branch
    f = a * (nbins / _TWO_PI) + (nbins - 0.5)
    # int32, not int64: AVX2 converts floats to int32 four lanes at a time
    # and to int64 one at a time, which kept the calling loops from SIMD
    # code; the bins are small, so they are the same
    i = np.int32(f)
    w = f - i
    # i lies in [nbins - 1, 2 nbins - 1]: subtractions, not a modulo (an
    # integer division, which keeps the loops that call this from SIMD code)
    i0 = i - nbins if i >= nbins else i
    i1 = i + 1 - nbins
    i1 = i1 - nbins if i1 >= nbins else i1
    return i0, i1, w


@njit(cache=True)
def pair_scratch(n_max: int) -> tuple:
    """Work arrays for ``pair_histogram`` on up to n_max minutiae: (float64
    (7, P + simd.LANES), int64 (4, P)) with P the number of pairs (at least
    n_max + 8); the float64 part has room for one more block of the pair
    search. Allocate once per thread and reuse: the contents never affect
    a result (P does, through the band width of very tall sets, and stays
    as it is)."""
    cap = max(n_max * (n_max - 1) // 2, n_max + 8)
    return np.empty((7, cap + simd.LANES)), np.empty((4, cap), dtype=np.int64)


@intrinsic
def _near_pairs(typingctx, buf, j0, stop, xyt, r2, k):
    # One block of the pair search, eight candidates j0..j0+7 (those below
    # stop) of a minutia (x, y, theta) = xyt at once: rows 4-6 of buf hold
    # the band-sorted minutiae, and the differences, the minutia's angle
    # and the candidate's angle of the pairs within R_MAX are written, in
    # order, to rows 0-3 from column k on. Returns the new k. The scalar
    # loop kept a pair by adding its test to k after writing it: numba
    # cannot vectorise that, so this tests the eight at once and compacts
    # them without a branch (``simd.store_kept``). Each
    # lane computes dx, dy and dx * dx + dy * dy as the scalar code does;
    # a whole block is stored (columns past the new k are scratch).
    if buf != types.Array(types.float64, 2, "C") or xyt != types.UniTuple(types.float64, 3):
        return None  # the vector loads and stores need contiguous float64 rows
    sig = types.int64(buf, types.int64, types.int64, xyt, types.float64, types.int64)

    def codegen(context, builder, signature, args):
        bufv, j0v, stopv, xytv, r2v, kv = args
        aty = signature.args[0]
        xi, yi, ti = (builder.extract_value(xytv, q) for q in range(3))
        dx = builder.fsub(simd.load(builder, simd.element_pointer(context, builder, aty, bufv, 4, j0v)),
                          simd.splat(builder, xi))
        dy = builder.fsub(simd.load(builder, simd.element_pointer(context, builder, aty, bufv, 5, j0v)),
                          simd.splat(builder, yi))
        tj = simd.load(builder, simd.element_pointer(context, builder, aty, bufv, 6, j0v))
        dd = builder.fadd(builder.fmul(dx, dx), builder.fmul(dy, dy))
        zero = simd.splat(builder, context.get_constant(types.float64, 0.0))
        keep = builder.and_(builder.fcmp_ordered("<", dd, simd.splat(builder, r2v)),
                            builder.fcmp_unordered("!=", dd, zero))
        keep = builder.and_(keep, simd.lanes_below(builder, j0v, stopv))
        # every kept pair of the block has the minutia's angle: one store
        simd.store(builder, simd.splat(builder, ti),
                   simd.element_pointer(context, builder, aty, bufv, 2, kv))
        return simd.store_kept(
            builder, [dx, dy, tj],
            [lambda at, row=row: simd.element_pointer(context, builder, aty, bufv, row, at)
             for row in (0, 1, 3)], kv, keep)

    return sig, codegen


@njit(cache=True)
def pair_histogram(m: np.ndarray, n: int, hist: np.ndarray, fbuf: np.ndarray,
                   ibuf: np.ndarray) -> None:
    """Pool the first n minutiae rows (x, y, theta, type) of m into hist
    (N_BINS,), which is zeroed first. Rigid-invariant by construction;
    angles in m must lie in [0, 2 pi). fbuf, ibuf: ``pair_scratch(n)``.

    Each unordered pair is pooled once, in the orientation whose first
    angle is the smaller: seen from i, the pair is (theta_i - phi,
    theta_j - phi); seen from j it is (theta_j - phi - pi, theta_i - phi - pi).
    The choice depends only on those invariant angles, so it is itself
    invariant, and it halves the work against pooling both orientations.

    Four passes instead of one loop, for speed (the sums are those of
    every pair within R_MAX, each pair's weights added in a fixed order):
    the minutiae are ordered by bands of y (a counting sort), so that each
    one is tested only against those of the bands within R_MAX above it
    (about half of all pairs on a rolled impression); the pairs within
    R_MAX are listed with their coordinate differences and angles, eight
    candidates at a time (a stream compaction keeps those within R_MAX, in
    order: ``_near_pairs``); their bins and weights are computed in a loop
    with no branches over contiguous arrays, which the compiler turns into SIMD code (one
    pass per pair was latency-bound at about 3x the time); then the
    weights are added to the histogram."""
    hist[:] = 0.0
    if n < 2:
        return
    r2 = R_MAX * R_MAX
    dxb = fbuf[0]
    dyb = fbuf[1]
    tib = fbuf[2]
    tjb = fbuf[3]
    # counting sort by bands of y: band b holds BAND_WIDTH-wide (or wider,
    # for a very tall set) slices above the lowest minutia; a pair whose
    # bands differ by more than `reach` lies further apart than R_MAX
    xs = fbuf[4]
    ys = fbuf[5]
    ts = fbuf[6]
    band = ibuf[0]
    start = ibuf[1]
    ymin = m[0, 1]
    ymax = m[0, 1]
    for i in range(1, n):
        ymin = min(ymin, m[i, 1])
        ymax = max(ymax, m[i, 1])
    width = max(BAND_WIDTH, (ymax - ymin) / (start.shape[0] - 3))
    nb = int((ymax - ymin) / width) + 1
    reach = int(np.ceil(R_MAX / width))
    start[: nb + 2] = 0
    for i in range(n):
        b = int((m[i, 1] - ymin) / width)
        band[i] = b
        start[b + 2] += 1
    for b in range(2, nb + 2):
        start[b] += start[b - 1]
    # start[b + 1] is now where band b begins; filling moves it to band b + 1's
    for i in range(n):
        b = band[i] + 1
        t = start[b]
        xs[t] = m[i, 0]
        ys[t] = m[i, 1]
        ts[t] = m[i, 2]
        start[b] = t + 1
    # start[b] is where band b begins (and start[nb] == n)
    k = 0
    for i in range(n):
        stop = start[min(int((ys[i] - ymin) / width) + reach + 1, nb)]
        for j0 in range(i + 1, stop, simd.LANES):
            k = _near_pairs(fbuf, j0, stop, (xs[i], ys[i], ts[i]), r2, k)
    wdb = fbuf[4]
    w1b = fbuf[5]
    w2b = fbuf[6]
    r0b = ibuf[0]
    r1b = ibuf[1]
    dib = ibuf[2]
    djb = ibuf[3]
    for p in range(k):
        dx = dxb[p]
        dy = dyb[p]
        fd = max(np.sqrt(dx * dx + dy * dy) * (N_DIST / R_MAX) - 0.5, 0.0)
        d0 = np.int32(fd)  # int32 vectorises (``_bin_wrapped``)
        d1 = min(d0 + 1, N_DIST - 1)
        phi = fine_atan2(dy, dx)
        a1 = wrap_angle(tib[p] - phi)
        a2 = wrap_angle(tjb[p] - phi)
        b1 = a2 - np.pi if a2 >= np.pi else a2 + np.pi
        b2 = a1 - np.pi if a1 >= np.pi else a1 + np.pi
        first = (a1 < b1) | ((a1 == b1) & (a2 <= b2))
        # angle bins wrap: shifting by a whole turn of bins keeps f >= 0
        f1 = (a1 if first else b1) * (N_ANGLE / _TWO_PI) + (N_ANGLE - 0.5)
        f2 = (a2 if first else b2) * (N_ANGLE / _TWO_PI) + (N_ANGLE - 0.5)
        q1 = np.int32(f1)
        q2 = np.int32(f2)
        i0 = q1 % N_ANGLE
        j0 = q2 % N_ANGLE
        wdb[p] = fd - d0
        w1b[p] = f1 - q1
        w2b[p] = f2 - q2
        r0b[p] = (d0 * N_ANGLE + i0) * N_ANGLE + j0
        r1b[p] = (d1 * N_ANGLE + i0) * N_ANGLE + j0
        dib[p] = ((q1 + 1) % N_ANGLE - i0) * N_ANGLE
        djb[p] = (q2 + 1) % N_ANGLE - j0
    for p in range(k):
        # trilinear spreading over (distance, a1, a2)
        wd = wdb[p]
        w1 = w1b[p]
        w2 = w2b[p]
        s00 = (1.0 - w1) * (1.0 - w2)
        s01 = (1.0 - w1) * w2
        s10 = w1 * (1.0 - w2)
        s11 = w1 * w2
        di = dib[p]
        dj = djb[p]
        for a in range(2):
            r0 = r1b[p] if a == 1 else r0b[p]
            wa = wd if a == 1 else 1.0 - wd
            hist[r0] += wa * s00
            hist[r0 + dj] += wa * s01
            hist[r0 + di] += wa * s10
            hist[r0 + di + dj] += wa * s11


@njit(cache=True)
def spatial_histogram(m: np.ndarray, n: int, ref: np.ndarray, hist: np.ndarray) -> None:
    """Pool minutiae around the reference point into hist (N_SPATIAL,):
    polar rings x sectors x direction, in the reference's own frame (so the
    result moves with the print), spread linearly over neighbouring bins.
    ref: (x, y, angle, found); nothing is pooled when found is 0."""
    spatial_pooled(m, n, ref, hist, np.empty((4, n)), np.empty((4, n), dtype=np.int64))


@njit(cache=True)
def spatial_pooled(m: np.ndarray, n: int, ref: np.ndarray, hist: np.ndarray,
                   fbuf: np.ndarray, ibuf: np.ndarray) -> None:
    """``spatial_histogram`` with its work arrays given: float64 and int64
    arrays of at least (4, n), such as ``pair_scratch(n)``'s (the contents
    never affect a result).

    Two passes, for speed: the bins and weights of every minutia in a loop
    with no branches (which the compiler turns into SIMD code), then the
    weights of the minutiae within R_SPATIAL added to the histogram, minutia
    by minutia in their order and each minutia's eight weights in a fixed
    order, so the sums are those of one loop that does both."""
    hist[:] = 0.0
    if ref[3] == 0.0:
        return
    c = np.cos(ref[2])
    s = np.sin(ref[2])
    rx = ref[0]
    ry = ref[1]
    ra = ref[2]
    rr = fbuf[0]
    wrb = fbuf[1]
    wsb = fbuf[2]
    wdb = fbuf[3]
    lo = ibuf[0]
    drb = ibuf[1]
    dsb = ibuf[2]
    ddb = ibuf[3]
    for i in range(n):
        dx = m[i, 0] - rx
        dy = m[i, 1] - ry
        # coordinates in the reference frame: axis along the reference angle
        u = c * dx + s * dy
        v = -s * dx + c * dy
        r = np.sqrt(u * u + v * v)
        rr[i] = r
        fr = r / R_SPATIAL * N_RING - 0.5
        # fr < 0: both ring weights on ring 0 (the upper one with weight 0);
        # clamped for minutiae beyond R_SPATIAL, which are not pooled
        r0 = min(np.int32(max(fr, 0.0)), N_RING - 1)
        r1 = r0 + 1 if r0 + 1 < N_RING and fr >= 0.0 else r0
        wrb[i] = fr - r0 if fr >= 0.0 else 0.0
        s0, s1, ws = _wrap_bin(fine_atan2(v, u), N_SECTOR)
        d0, d1, wd = _wrap_bin(m[i, 2] - ra, N_DIR)
        wsb[i] = ws
        wdb[i] = wd
        lo[i] = (r0 * N_SECTOR + s0) * N_DIR + d0
        drb[i] = (r1 - r0) * (N_SECTOR * N_DIR)
        dsb[i] = (s1 - s0) * N_DIR
        ddb[i] = d1 - d0
    for i in range(n):
        if rr[i] >= R_SPATIAL:
            continue
        wr = wrb[i]
        ws = wsb[i]
        wd = wdb[i]
        dd = ddb[i]
        for a in range(2):
            wa = wr if a == 1 else 1.0 - wr
            ra_ = lo[i] + (drb[i] if a == 1 else 0)
            for b in range(2):
                wb = wa * (ws if b == 1 else 1.0 - ws)
                base = ra_ + (dsb[i] if b == 1 else 0)
                hist[base] += wb * (1.0 - wd)
                hist[base + dd] += wb * wd


@njit(cache=True)
def features(m: np.ndarray, n: int, ref: np.ndarray, mean: np.ndarray,
             feat: np.ndarray, fbuf: np.ndarray, ibuf: np.ndarray) -> None:
    """The Hellinger-mapped feature of one impression, (N_FEATURES,): the
    pair histogram, then the reference-frame histogram (set to the
    population mean when no reference point was found, so that it adds
    nothing once centred). fbuf, ibuf: ``pair_scratch``."""
    pair_histogram(m, n, feat[:N_BINS], fbuf, ibuf)
    spatial_pooled(m, n, ref, feat[N_BINS:], fbuf, ibuf)
    for lo, hi in ((0, N_BINS), (N_BINS, N_FEATURES)):
        total = feat[lo:hi].sum()
        if total > 0.0:
            for h in range(lo, hi):
                feat[h] = np.sqrt(feat[h] / total)
        else:
            for h in range(lo, hi):
                feat[h] = mean[h]



# impressions per task of the parallel loops: the work arrays are allocated
# once per block, not once per impression
BLOCK = 64


@njit(cache=True)
def work_arrays() -> tuple:
    # master, impression, their reference points, and pair_scratch
    fbuf, ibuf = pair_scratch(MAX_IMPRESSION)
    return (np.empty((MAX_MASTER, 4)), np.empty((MAX_IMPRESSION, 4)), np.empty(3),
            np.empty(4), fbuf, ibuf)


@njit(cache=True)
def impression_features(seed: int, identity: int, finger: int, encounter: int,
                         capture: int, quality: int, noise: float, mean: np.ndarray,
                         feat: np.ndarray, work: tuple, capture_noise: float = 1.0) -> int:
    # generate one impression and write its features; returns its minutiae count
    master, imp, ref_m, ref, fbuf, ibuf = work
    n_master, cls = master_finger(seed, identity, finger, master, ref_m)
    k = impression_from_master(seed, identity, finger, encounter, capture, quality, noise,
                               master, n_master, ref_m, cls, imp, ref, capture_noise)
    features(imp, k, ref, mean, feat, fbuf, ibuf)
    return k



@njit(cache=True, parallel=True)
def feature_batch(seed: int, identities: np.ndarray, fingers: np.ndarray,
                  encounters: np.ndarray, captures: np.ndarray,
                  qualities: np.ndarray, mean: np.ndarray, noise: float = 1.0) -> np.ndarray:
    """Hellinger-mapped features (n, N_FEATURES) of generated impressions;
    mean fills a reference part that was not found (zeros while learning);
    noise scales the extraction errors."""
    n = identities.shape[0]
    out = np.zeros((n, N_FEATURES))
    for blk in prange((n + BLOCK - 1) // BLOCK):
        work = work_arrays()
        for t in range(blk * BLOCK, min((blk + 1) * BLOCK, n)):
            impression_features(seed, identities[t], fingers[t], encounters[t], captures[t],
                                 qualities[t], noise, mean, out[t], work)
    return out

