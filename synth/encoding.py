"""Fixed-length feature vectors computed from an impression's minutiae.

Design (a pooled, rigid-invariant pair descriptor):

1. Every ordered pair of minutiae (i, j) closer than ``R_MAX`` mm gives three
   numbers that do not change under rotation or translation of the print:
   their distance d, and the angles of each minutia's direction relative to
   the line from i to j, a_i = theta_i - phi_ij and a_j = theta_j - phi_ij.
2. The pairs are pooled into a histogram over (d, a_i, a_j) with
   ``N_DIST`` x ``N_ANGLE`` x ``N_ANGLE`` bins, each pair spread over its
   neighbouring bins by linear interpolation (so jitter moves weight
   smoothly instead of flipping bins; angle bins wrap around). This part
   needs no alignment but says little about where minutiae lie.
2b. Where the impression's reference point (the core, which extractors
   report beside the minutiae, with its axis) was found, a second histogram
   pools every minutia by its position in the reference frame (``N_RING``
   rings of 2 mm x ``N_SECTOR`` sectors) and its direction relative to the
   axis (``N_DIR`` bins), as FingerCode-style encodings do (Jain et al.,
   IEEE TIP 2000). It moves with the print, so it is rigid-invariant too,
   and it carries the spatial layout the pair part lacks. When no
   reference was found (outside the captured area, or a failed detection)
   this part is set to the population mean, i.e. it contributes nothing.
3. Each part is normalised to sum 1 and square-rooted (Hellinger map),
   the population mean is subtracted (so that unrelated fingers score near
   0 instead of near the common shape), and a linear discriminant projection
   maps it to ``dim`` numbers, normalised to unit length: the float32
   vector. The projection (Fisher LDA: directions that maximise total
   variance over within-finger variance) is learned once from a fixed
   synthetic reference population of pairs of impressions of the same
   finger, and shipped in ``synth/projection_lda.npz`` so that every machine
   encodes identically (``python -m synth.projection`` rebuilds it; a test
   checks that the shipped file is what the code learns). Whitening by the
   within-finger scatter is what lifts one-finger d' from about 1.7 with a
   random projection to about 2.5 at 64 dimensions (pair part alone).
4. The binary code is the sign pattern of a second fixed random projection
   of the float vector (SimHash, Charikar 2002): the expected Hamming
   distance between two codes is bits * angle / pi, so Hamming similarity
   tracks the float cosine. ``bits`` must be a multiple of 64.

Impressions of one finger share most of their pairs (less what lies outside
the common area, missed and spurious minutiae) and land near each other;
different fingers share only the population's common shape, which step 3
removes. The projections and the mean depend only on (dim, bits) and fixed
internal seeds, never on the scenario's seed, so vectors from different runs
are comparable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from numba import njit, prange

from synth.angles import fine_atan2
from synth.angles import wrap_angle
from synth.fingers import MAX_MASTER, master_finger
from synth.impressions import MAX_IMPRESSION, impression_from_master

R_MAX = 5.0        # mm: pairs beyond this are not pooled
N_DIST = 5
N_ANGLE = 8
N_BINS = N_DIST * N_ANGLE * N_ANGLE   # pair part
R_SPATIAL = 12.0   # mm around the reference point
N_RING = 6
N_SECTOR = 12
N_DIR = 6
N_SPATIAL = N_RING * N_SECTOR * N_DIR  # reference-frame part
N_FEATURES = N_BINS + N_SPATIAL
_PROJECTION_SEED = 0x5EED_F95C  # fixed: encodings are comparable across scenarios
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
    i = int(f)
    w = f - i
    i0 = i % nbins
    i1 = (i + 1) % nbins
    return i0, i1, w


@njit(cache=True)
def pair_scratch(n_max: int) -> tuple:
    """Work arrays for ``pair_histogram`` on up to n_max minutiae: (float64
    (7, P), int64 (4, P)) with P the number of pairs. Allocate once per
    thread and reuse: the contents never affect a result."""
    if n_max > 0xFFFF:
        raise ValueError("pair_scratch: at most 65535 minutiae")  # pair indices are packed in 16 bits
    cap = max(n_max * (n_max - 1) // 2, 1)
    return np.empty((7, cap)), np.empty((4, cap), dtype=np.int64)


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

    Three passes instead of one loop, for speed (the sums are the same, in
    the same order): the pairs within R_MAX are listed without branches;
    their bins and weights are computed in a loop with no branches over
    contiguous arrays, which the compiler turns into SIMD code (one pass
    per pair was latency-bound at about 3x the time); then the weights are
    added to the histogram."""
    hist[:] = 0.0
    r2 = R_MAX * R_MAX
    dxb = fbuf[0]
    dyb = fbuf[1]
    tib = fbuf[2]
    tjb = fbuf[3]
    packed = ibuf[3]
    k = 0
    for i in range(n):
        xi = m[i, 0]
        yi = m[i, 1]
        for j in range(i + 1, n):
            dx = m[j, 0] - xi
            dy = m[j, 1] - yi
            dd = dx * dx + dy * dy
            # written always, kept only when the pair counts
            packed[k] = (i << 16) | j
            k += (dd < r2) & (dd != 0.0)
    for p in range(k):
        i = packed[p] >> 16
        j = packed[p] & 0xFFFF
        dxb[p] = m[j, 0] - m[i, 0]
        dyb[p] = m[j, 1] - m[i, 1]
        tib[p] = m[i, 2]
        tjb[p] = m[j, 2]
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
        d0 = int(fd)
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
        q1 = int(f1)
        q2 = int(f2)
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
    hist[:] = 0.0
    if ref[3] == 0.0:
        return
    c = np.cos(ref[2])
    s = np.sin(ref[2])
    for i in range(n):
        dx = m[i, 0] - ref[0]
        dy = m[i, 1] - ref[1]
        # coordinates in the reference frame: axis along the reference angle
        u = c * dx + s * dy
        v = -s * dx + c * dy
        r = np.sqrt(u * u + v * v)
        if r >= R_SPATIAL:
            continue
        fr = r / R_SPATIAL * N_RING - 0.5
        if fr < 0.0:
            r0 = 0
            r1 = 0
            wr = 0.0
        else:
            r0 = int(fr)
            r1 = r0 + 1 if r0 + 1 < N_RING else r0
            wr = fr - r0
        s0, s1, ws = _wrap_bin(fine_atan2(v, u), N_SECTOR)
        d0, d1, wd = _wrap_bin(m[i, 2] - ref[2], N_DIR)
        for a in range(2):
            rb = r1 if a == 1 else r0
            wa = wr if a == 1 else 1.0 - wr
            for b in range(2):
                sb = s1 if b == 1 else s0
                wb = wa * (ws if b == 1 else 1.0 - ws)
                base = (rb * N_SECTOR + sb) * N_DIR
                hist[base + d0] += wb * (1.0 - wd)
                hist[base + d1] += wb * wd


@njit(cache=True)
def features(m: np.ndarray, n: int, ref: np.ndarray, mean: np.ndarray,
             feat: np.ndarray, fbuf: np.ndarray, ibuf: np.ndarray) -> None:
    """The Hellinger-mapped feature of one impression, (N_FEATURES,): the
    pair histogram, then the reference-frame histogram (set to the
    population mean when no reference point was found, so that it adds
    nothing once centred). fbuf, ibuf: ``pair_scratch``."""
    pair_histogram(m, n, feat[:N_BINS], fbuf, ibuf)
    spatial_histogram(m, n, ref, feat[N_BINS:])
    for lo, hi in ((0, N_BINS), (N_BINS, N_FEATURES)):
        total = feat[lo:hi].sum()
        if total > 0.0:
            for h in range(lo, hi):
                feat[h] = np.sqrt(feat[h] / total)
        else:
            for h in range(lo, hi):
                feat[h] = mean[h]


@njit(cache=True)
def _project(feat: np.ndarray, mean: np.ndarray, proj: np.ndarray,
             simhash: np.ndarray, out_v: np.ndarray, out_b: np.ndarray) -> None:
    # centre, project, normalise; then SimHash bits
    dim = proj.shape[1]
    # float32 sums (the output is float32): twice the SIMD width of float64;
    # no fast-math, so the order of the additions, and the bits, are fixed
    v32 = np.zeros(dim, dtype=np.float32)
    for h in range(feat.shape[0]):
        x = np.float32(feat[h] - mean[h])
        if x != 0.0:
            for k in range(dim):
                v32[k] += x * proj[h, k]
    v = v32.astype(np.float64)
    norm = np.sqrt((v * v).sum())
    if norm > 0.0:
        v /= norm
    for k in range(dim):
        out_v[k] = v[k]
    # simhash is stored (dim, bits): accumulate whole rows (vectorisable)
    # rather than one long dependent sum per bit
    nbits = simhash.shape[1]
    acc = np.zeros(nbits)
    for k in range(dim):
        vk = v[k]
        for r in range(nbits):
            acc[r] += simhash[k, r] * vk
    for byte in range(out_b.shape[0]):
        b = 0
        for bit in range(8):
            if acc[byte * 8 + bit] > 0.0:
                b |= 1 << bit
        out_b[byte] = b


# impressions per task of the parallel loops: the work arrays are allocated
# once per block, not once per impression
_BLOCK = 64


@njit(cache=True)
def _work_arrays() -> tuple:
    # master, impression, their reference points, and pair_scratch
    fbuf, ibuf = pair_scratch(MAX_IMPRESSION)
    return (np.empty((MAX_MASTER, 4)), np.empty((MAX_IMPRESSION, 4)), np.empty(3),
            np.empty(4), fbuf, ibuf)


@njit(cache=True)
def _impression_features(seed: int, identity: int, finger: int, encounter: int,
                         capture: int, quality: int, mean: np.ndarray, feat: np.ndarray,
                         work: tuple) -> int:
    # generate one impression and write its features; returns its minutiae count
    master, imp, ref_m, ref, fbuf, ibuf = work
    n_master, cls = master_finger(seed, identity, finger, master, ref_m)
    k = impression_from_master(seed, identity, finger, encounter, capture, quality,
                               master, n_master, ref_m, cls, imp, ref)
    features(imp, k, ref, mean, feat, fbuf, ibuf)
    return k


@njit(cache=True, parallel=True)
def _encode_batch(seed: int, identities: np.ndarray, fingers: np.ndarray,
                  encounters: np.ndarray, captures: np.ndarray,
                  qualities: np.ndarray, mean: np.ndarray, proj: np.ndarray,
                  simhash: np.ndarray, out_v: np.ndarray, out_b: np.ndarray,
                  counts: np.ndarray) -> None:
    n = identities.shape[0]
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        work = _work_arrays()
        feat = np.empty(N_FEATURES)
        for t in range(blk * _BLOCK, min((blk + 1) * _BLOCK, n)):
            counts[t] = _impression_features(seed, identities[t], fingers[t], encounters[t],
                                             captures[t], qualities[t], mean, feat, work)
            _project(feat, mean, proj, simhash, out_v[t], out_b[t])


@njit(cache=True, parallel=True)
def feature_batch(seed: int, identities: np.ndarray, fingers: np.ndarray,
                  encounters: np.ndarray, captures: np.ndarray,
                  qualities: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Hellinger-mapped features (n, N_FEATURES) of generated impressions;
    mean fills a reference part that was not found (zeros while learning)."""
    n = identities.shape[0]
    out = np.zeros((n, N_FEATURES))
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        work = _work_arrays()
        for t in range(blk * _BLOCK, min((blk + 1) * _BLOCK, n)):
            _impression_features(seed, identities[t], fingers[t], encounters[t], captures[t],
                                 qualities[t], mean, out[t], work)
    return out


_DATA = Path(__file__).with_name("projection_lda.npz")


@lru_cache(maxsize=None)
def _shipped_projection() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_DATA, allow_pickle=False) as z:
        if int(z["n_features"]) != N_FEATURES or float(z["r_max"]) != R_MAX:
            raise RuntimeError(
                f"{_DATA} was learned for other histogram settings; "
                "rebuild it with `python -m synth.projection`")
        # the basis stays float32, as stored: the kernel widens each entry
        # exactly, and half the bytes to stream per impression is what
        # bounds the projection's speed
        return z["mean"].astype(np.float64), z["basis"].astype(np.float32)


@lru_cache(maxsize=None)
def projections(dim: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (N_FEATURES,) float64, projection (N_FEATURES, dim) float32,
    SimHash matrix (dim, bits) float64)."""
    mean, basis = _shipped_projection()
    if dim > basis.shape[1]:
        raise ValueError(f"dim must be at most {basis.shape[1]}, got {dim}")
    rng = np.random.default_rng([_PROJECTION_SEED, dim, bits])
    simhash = np.ascontiguousarray(rng.standard_normal((bits, dim)).T)
    return mean, np.ascontiguousarray(basis[:, :dim]), simhash


def check_dims(dim: int, bits: int) -> None:
    """Raise ValueError naming the bad argument."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 64 or bits % 64:
        raise ValueError(f"bits must be a positive multiple of 64, got {bits!r}")


def encode(seed: int, identities: np.ndarray, fingers: np.ndarray,
           encounters: np.ndarray, captures: np.ndarray, qualities: np.ndarray,
           dim: int = 64, bits: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate and encode one impression per row of the key arrays.

    All inputs have shape (n,) or broadcast to it: identity, finger position
    1..10, encounter (0 = enrolment), capture type index, quality 1..5.
    Returns float32 unit vectors (n, dim), packed binary codes uint8
    (n, bits // 8), and the minutiae count of each impression (n,) int32.
    Row t depends only on (seed, row t of the keys): any split of the rows
    gives the same bytes.
    """
    check_dims(dim, bits)
    ids = np.ascontiguousarray(identities, dtype=np.int64)
    n = ids.shape[0]
    keys = [np.ascontiguousarray(np.broadcast_to(a, (n,)), dtype=np.int64)
            for a in (fingers, encounters, captures, qualities)]
    mean, proj, simhash = projections(int(dim), int(bits))
    out_v = np.empty((n, dim), dtype=np.float32)
    out_b = np.empty((n, bits // 8), dtype=np.uint8)
    counts = np.empty(n, dtype=np.int32)
    if n:
        _encode_batch(int(seed), ids, keys[0], keys[1], keys[2], keys[3],
                      mean, proj, simhash, out_v, out_b, counts)
    return out_v, out_b, counts


@njit(cache=True)
def encode_minutiae(m: np.ndarray, ref: np.ndarray, mean: np.ndarray, proj: np.ndarray,
                    simhash: np.ndarray, out_v: np.ndarray, out_b: np.ndarray) -> None:
    """Encode one minutiae set (n, 4) with its reference (4,) into out_v, out_b."""
    feat = np.empty(N_FEATURES)
    fbuf, ibuf = pair_scratch(m.shape[0])
    features(m, m.shape[0], ref, mean, feat, fbuf, ibuf)
    _project(feat, mean, proj, simhash, out_v, out_b)


def encode_set(m: np.ndarray, ref: np.ndarray | None = None, dim: int = 64,
               bits: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Encode an explicit minutiae array (n, 4) and reference point (x, y,
    angle, found) or None: (float32 (dim,), uint8 (bits/8,))."""
    check_dims(dim, bits)
    mean, proj, simhash = projections(int(dim), int(bits))
    out_v = np.empty(dim, dtype=np.float32)
    out_b = np.empty(bits // 8, dtype=np.uint8)
    r = np.zeros(4) if ref is None else np.asarray(ref, dtype=np.float64)
    encode_minutiae(np.ascontiguousarray(m, dtype=np.float64), r, mean, proj,
                    simhash, out_v, out_b)
    return out_v, out_b
