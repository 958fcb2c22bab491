"""Float vectors and binary codes from the histogram features.

The features (``fpscale.synth.features``) are centred on the population mean,
projected by a Fisher LDA basis learned once from a fixed reference
population (shipped as ``fpscale/synth/lda_basis.npz``, rebuilt by
``python -m fpscale.synth.lda_basis``) and normalised to unit length: the float32
vector. The binary code is the sign pattern of a fixed random projection of
that vector (SimHash, Charikar 2002), so Hamming similarity tracks the
cosine. The basis, the mean and the SimHash matrix depend only on (dim,
bits), never on a scenario's seed. docs/encoding.md has the design.
``code = "itq"`` takes a learned matrix in place of the random one
(``fpscale.synth.itq_basis``, shipped for a few (dim, bits)); "simhash" is
the default. ``quality_weighting`` scales each LDA direction by how much
finger signal it keeps at the capture's quality before the vector is
normalised (weights learned with the basis; docs/encoding.md).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from fpscale import simd
from fpscale.synth.features import (BLOCK, N_FEATURES, R_MAX, features, impression_features,
                            pair_scratch, work_arrays)

_PROJECTION_SEED = 0x5EED_F95C  # fixed: encodings are comparable across scenarios


@njit(cache=True)
def _project(feat: np.ndarray, mean: np.ndarray, proj: np.ndarray,
             simhash: np.ndarray, out_v: np.ndarray, out_b: np.ndarray) -> None:
    # centre, project (float32 sums: the output is float32; no fast-math,
    # so the order of the additions, and the bits, are fixed), normalise;
    # then SimHash bits
    xs = np.empty((1, feat.shape[0]), dtype=np.float32)
    for h in range(feat.shape[0]):
        xs[0, h] = np.float32(feat[h] - mean[h])
    v32 = np.empty((1, proj.shape[1]), dtype=np.float32)
    # one row: no whole tile, so no strips
    _project_rows(xs, 1, (proj, np.empty((0, proj.shape[0], TILE_COLS), dtype=np.float32)), v32)
    _signs(_normalised(v32[0], out_v), simhash, out_b)


# impressions projected together by ``_encode_batch``: each row of the basis
# is then read once for all of them, not once per impression
PROJECT_BATCH = 16
# a tile of the projection's sums held in registers over the whole basis:
# TILE_ROWS impressions x TILE_COLS dimensions (two eight-lane float32 vectors)
TILE_ROWS = 4
TILE_COLS = 2 * simd.LANES


@intrinsic
def _tile_sums(typingctx, xs, b0, strips, s, v32):
    # v32[b0 + r, k0 + c] = the sum over h, in increasing h, of
    # xs[b0 + r, h] * strips[s, h, c] (the basis's proj[h, k0 + c], k0 = s
    # TILE_COLS; float32 products and sums, no fused multiply-add), for
    # r < TILE_ROWS, c < TILE_COLS: the tile's eight
    # accumulator vectors stay in registers for the whole basis, so a row
    # of the basis costs two vector loads and four broadcasts for 64
    # multiply-adds, and nothing is stored until the end. Numba cannot
    # write this: its loop vectoriser works on one loop at a time (the sums
    # would go back to memory every row) and its straight-line vectoriser
    # is off. Each lane adds in the order of the scalar loop, from +0.
    mat = types.Array(types.float32, 2, "C")
    if xs != mat or strips != types.Array(types.float32, 3, "C") or v32 != mat:
        return None  # the vector loads and stores need contiguous float32 rows
    sig = types.none(xs, types.int64, strips, types.int64, v32)

    def codegen(context, builder, signature, args):
        xsv, b0v, stv, sv, outv = args
        xty, _, sty, _, oty = signature.args
        nf = cgutils.unpack_tuple(builder, context.make_array(sty)(context, builder, stv).shape)[1]
        k0v = builder.mul(sv, ir.Constant(simd.I64, TILE_COLS))
        zero = ir.Constant(simd.VEC32, [0.0] * simd.LANES)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(2 * TILE_ROWS)]
        offs = [builder.add(k0v, ir.Constant(simd.I64, j * simd.LANES)) for j in range(2)]
        rows = [builder.add(b0v, ir.Constant(simd.I64, r)) for r in range(TILE_ROWS)]
        with cgutils.for_range(builder, nf) as loop:
            h = loop.index
            ps = [simd.load32(builder, simd.element_pointer(context, builder, sty, stv, sv, h, o))
                  for o in (0, simd.LANES)]
            for r in range(TILE_ROWS):
                x = builder.load(simd.element_pointer(context, builder, xty, xsv, rows[r], h))
                xv = simd.splat(builder, x, simd.VEC32)
                for j in range(2):
                    acc = accs[2 * r + j]
                    builder.store(builder.fadd(builder.load(acc), builder.fmul(xv, ps[j])), acc)
        for r in range(TILE_ROWS):
            for j in range(2):
                ptr = simd.element_pointer(context, builder, oty, outv, rows[r], offs[j])
                builder.store(builder.load(accs[2 * r + j]),
                              builder.bitcast(ptr, simd.VEC32.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _project_rows(xs: np.ndarray, nb: int, basis: tuple, v32: np.ndarray) -> None:
    # v32[b] = the sum over h, in increasing h, of xs[b, h] * proj[h]
    # (float32 products and sums), for b < nb; basis: (proj, its strips),
    # ``projection_basis``. Whole tiles in registers (``_tile_sums``), the
    # rows and columns past the last whole tile one basis row at a time.
    # Either way each sum adds in the same order, so the bits do not depend
    # on which path took them. A zero xs[b, h] adds a signed zero, which
    # leaves every sum's bits as they are (the sums start at +0, so none is
    # ever -0), so zeros need no branch.
    proj, strips = basis
    dim = proj.shape[1]
    nf = proj.shape[0]
    rows = nb - nb % TILE_ROWS
    cols = dim - dim % TILE_COLS
    # strips outside: a tile reads one strip (48 KB of a 752-row basis),
    # which stays in cache for the next rows' tiles
    for st in range(cols // TILE_COLS):
        for b0 in range(0, rows, TILE_ROWS):
            _tile_sums(xs, b0, strips, st, v32)
    for b in range(nb):
        k_start = cols if b < rows else 0
        if k_start == dim:
            continue
        v = v32[b]
        v[k_start:] = 0.0
        for h in range(nf):
            x = xs[b, h]
            p = proj[h]
            for k in range(k_start, dim):
                v[k] += x * p[k]


@njit(cache=True)
def _normalised(v32: np.ndarray, out_v: np.ndarray) -> np.ndarray:
    # a projected vector (dim,) float32 at unit length: float64 (returned,
    # what the code bits are taken from) and float32 (into out_v)
    v = v32.astype(np.float64)
    norm = np.sqrt((v * v).sum())
    if norm > 0.0:
        v /= norm
    for k in range(v.shape[0]):
        out_v[k] = v[k]
    return v


@njit(cache=True)
def _signs(v: np.ndarray, simhash: np.ndarray, out_b: np.ndarray) -> None:
    # the code of a unit vector v (dim,) float64: bit r is set when the sum
    # over k, in increasing k, of simhash[k, r] * v[k] (float64) is > 0
    # simhash is stored (dim, bits): accumulate whole rows (vectorisable)
    # rather than one long dependent sum per bit
    nbits = simhash.shape[1]
    acc = np.zeros(nbits)
    for k in range(v.shape[0]):
        vk = v[k]
        for r in range(nbits):
            acc[r] += simhash[k, r] * vk
    _pack_signs(acc, out_b)


@njit(cache=True, inline="always")
def _pack_signs(acc: np.ndarray, out_b: np.ndarray) -> None:
    # bit r of out_b (little-endian within a byte) is acc[r] > 0
    for byte in range(out_b.shape[0]):
        b = 0
        for bit in range(8):
            # no branch: the signs are random, so a branch mispredicts half the time
            b |= np.int64(acc[byte * 8 + bit] > 0.0) << bit
        out_b[byte] = b


@njit(cache=True, fastmath=True)
def _screen_sums(v32: np.ndarray, w32t: np.ndarray, acc: np.ndarray) -> None:
    # acc[r] = the float32 sum of w32t[r, k] * v32[k] over k, in whatever
    # order (and with whatever fused multiply-adds) the compiler picks:
    # ``sign_screen`` bounds how far it can be from the float64 sum
    for r in range(w32t.shape[0]):
        w = w32t[r]
        s = np.float32(0.0)
        for k in range(w.shape[0]):
            s += w[k] * v32[k]
        acc[r] = s


@njit(cache=True)
def _screened_signs(v: np.ndarray, simhash: np.ndarray, screen: tuple, v32: np.ndarray,
                    acc: np.ndarray, out_b: np.ndarray) -> None:
    # ``_signs``'s bits, bit for bit: each sum is first taken in float32
    # (twice the SIMD lanes, any order), and where that sum lies within its
    # error bound of 0 (about one bit in ten thousand) its sign is taken
    # from the float64 sum, in the order ``_signs`` adds. Elsewhere the two
    # sums have the same sign. v32 (dim,), acc (bits,) float32: scratch.
    for k in range(v.shape[0]):
        v32[k] = np.float32(v[k])
    _screen_sums(v32, screen[0], acc)
    _settled_signs(v, simhash, screen[1], acc, out_b)


@njit(cache=True)
def _settled_signs(v: np.ndarray, simhash: np.ndarray, bound: np.ndarray, acc: np.ndarray,
                   out_b: np.ndarray) -> None:
    # the code bits of v from its float32 sums acc (bits,), taken in any
    # order: a sum within its bound of 0 takes the float64 sum's sign
    for r in range(acc.shape[0]):
        if abs(acc[r]) <= bound[r]:
            e = 0.0
            for k in range(v.shape[0]):
                e += simhash[k, r] * v[k]
            acc[r] = np.float32(1.0) if e > 0.0 else np.float32(-1.0)
    _pack_signs(acc, out_b)


@njit(cache=True, parallel=True)
def _encode_batch(seed: int, identities: np.ndarray, fingers: np.ndarray,
                  encounters: np.ndarray, captures: np.ndarray,
                  qualities: np.ndarray, noise: float, mean: np.ndarray, basis: tuple,
                  simhash: np.ndarray, screen: tuple, out_v: np.ndarray, out_b: np.ndarray,
                  counts: np.ndarray, capture_noise: float, weights: np.ndarray) -> None:
    # out_v with no rows: the vectors are not wanted (a codes-only run): each
    # batch normalises into a small scratch (which the code bits' sums read)
    # and copies it out only when they are, so there is no (n x dim) array
    # to allocate and fault in for every chunk of the gallery
    n = identities.shape[0]
    proj = basis[0]
    nf = proj.shape[0]
    keep_v = out_v.shape[0] > 0
    for blk in prange((n + BLOCK - 1) // BLOCK):
        work = work_arrays()
        feat = np.empty(N_FEATURES)
        xs = np.empty((PROJECT_BATCH, nf), dtype=np.float32)
        v32 = np.empty((PROJECT_BATCH, proj.shape[1]), dtype=np.float32)
        scratch = np.empty((PROJECT_BATCH, proj.shape[1]), dtype=np.float32)
        v64 = np.empty((PROJECT_BATCH, proj.shape[1]))
        acc = np.empty((PROJECT_BATCH, simhash.shape[1]), dtype=np.float32)
        end = min((blk + 1) * BLOCK, n)
        for t0 in range(blk * BLOCK, end, PROJECT_BATCH):
            nb = min(PROJECT_BATCH, end - t0)
            for b in range(nb):
                t = t0 + b
                counts[t] = impression_features(seed, identities[t], fingers[t], encounters[t],
                                                 captures[t], qualities[t], noise, mean, feat,
                                                 work, capture_noise)
                for h in range(nf):
                    xs[b, h] = np.float32(feat[h] - mean[h])
            _project_rows(xs, nb, basis, v32)
            for b in range(nb):
                # each direction times its weight at the capture's quality
                # (all ones without weighting: a float32 product by 1 is exact)
                w = weights[qualities[t0 + b]]
                for j in range(v32.shape[1]):
                    v32[b, j] *= w[j]
                v64[b] = _normalised(v32[b], scratch[b])
                if keep_v:
                    out_v[t0 + b] = scratch[b]
            # the code bits' float32 sums in tiles, as the projection's
            # (any order will do: ``_settled_signs`` bounds them)
            _project_rows(scratch, nb, (screen[2], screen[3]), acc)
            for b in range(nb):
                _settled_signs(v64[b], simhash, screen[1], acc[b], out_b[t0 + b])


_DATA = Path(__file__).with_name("lda_basis.npz")


@lru_cache(maxsize=None)
def shipped_basis() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_DATA, allow_pickle=False) as z:
        if int(z["n_features"]) != N_FEATURES or float(z["r_max"]) != R_MAX:
            raise RuntimeError(
                f"{_DATA} was learned for other histogram settings; "
                "rebuild it with `python -m fpscale.synth.lda_basis`")
        # the basis stays float32, as stored: the kernel widens each entry
        # exactly, and half the bytes to stream per impression is what
        # bounds the projection's speed
        return z["mean"].astype(np.float64), z["basis"].astype(np.float32)


@lru_cache(maxsize=None)
def quality_weights(dim: int, weighting: bool = True) -> np.ndarray:
    """Per-direction weights of the first dim LDA directions by capture
    quality, (6, dim) float32, row q for quality q (row 0 unused): the
    shipped ``quality_weights`` of the basis file, or all ones when
    weighting is False."""
    if not weighting:
        return np.ones((6, dim), dtype=np.float32)
    with np.load(_DATA, allow_pickle=False) as z:
        if "quality_weights" not in z.files:
            raise RuntimeError(f"{_DATA} has no quality weights; add them with "
                               "`python -m fpscale.synth.lda_basis --weights`")
        w = z["quality_weights"].astype(np.float32)
    if dim > w.shape[1]:
        raise ValueError(f"dim must be at most {w.shape[1]}, got {dim}")
    out = np.ones((6, dim), dtype=np.float32)
    out[1:] = w[:, :dim]
    return out


CODES = ("simhash", "itq")
# (dim, bits) with a shipped ITQ matrix (built by python -m
# fpscale.synth.itq_basis): the best-2012 profile's dim at the current and
# the doubled code length
ITQ_SHIPPED = ((256, 256), (256, 512))
ITQ_FILE = Path(__file__).with_name("itq_basis.npz")


@lru_cache(maxsize=None)
def itq_matrix(dim: int, bits: int) -> np.ndarray:
    """The shipped ITQ code matrix W (dim, bits) as float64; ValueError for
    a combination not shipped."""
    key = f"w_{dim}_{bits}"
    with np.load(ITQ_FILE, allow_pickle=False) as z:
        if key not in z.files:
            have = ", ".join(f"dim {d} bits {b}" for d, b in ITQ_SHIPPED)
            raise ValueError(f"no ITQ code is shipped for dim {dim}, bits {bits} "
                             f"(shipped: {have}); add it to ITQ_SHIPPED in fpscale/synth/embedding.py "
                             "and run `python -m fpscale.synth.itq_basis`")
        return z[key].astype(np.float64)


@lru_cache(maxsize=None)
def projections(dim: int, bits: int,
                code: str = "simhash") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (N_FEATURES,) float64, projection (N_FEATURES, dim) float32,
    code matrix (dim, bits) float64: SimHash's random one, or ITQ's learned one)."""
    mean, basis = shipped_basis()
    if dim > basis.shape[1]:
        raise ValueError(f"dim must be at most {basis.shape[1]}, got {dim}")
    if code == "itq":
        return mean, np.ascontiguousarray(basis[:, :dim]), np.ascontiguousarray(itq_matrix(dim, bits))
    if code != "simhash":
        raise ValueError(f"code must be one of {', '.join(CODES)}, got {code!r}")
    rng = np.random.default_rng([_PROJECTION_SEED, dim, bits])
    simhash = np.ascontiguousarray(rng.standard_normal((bits, dim)).T)
    return mean, np.ascontiguousarray(basis[:, :dim]), simhash


@lru_cache(maxsize=None)
def projection_basis(dim: int, bits: int, code: str = "simhash") -> tuple[np.ndarray, np.ndarray]:
    """The projection of ``projections`` (N_FEATURES, dim) float32 and the
    same columns cut into strips of TILE_COLS, (dim // TILE_COLS,
    N_FEATURES, TILE_COLS) float32, each strip contiguous so that a tile of
    the projection reads its basis in order (``_tile_sums``)."""
    proj = projections(dim, bits, code)[1]
    return proj, strips(proj)


def strips(proj: np.ndarray) -> np.ndarray:
    """The whole TILE_COLS-wide column strips of a basis (nf, dim) float32,
    each contiguous: (dim // TILE_COLS, nf, TILE_COLS) float32."""
    s = proj.shape[1] // TILE_COLS
    cut = proj[:, :s * TILE_COLS].reshape(proj.shape[0], s, TILE_COLS).transpose(1, 0, 2)
    return np.ascontiguousarray(cut, dtype=np.float32)


# unit roundoff of float32
_U32 = 2.0 ** -24


@lru_cache(maxsize=None)
def sign_screen(dim: int, bits: int, code: str = "simhash") -> tuple:
    """The code matrix W (dim, bits) of ``projections`` as float32 rows
    (bits, dim), and for each bit a bound (bits,) float32 on how far a
    float32 sum of W[:, r] * v, in any order, can lie from the float64 sum,
    for any unit vector v: a float32 sum farther than that from 0 has the
    float64 sum's sign. Third and fourth, W as float32 (dim, bits) and its
    strips (``strips``), for summing many vectors' bits in tiles.

    The bound: rounding W and v to float32 moves each product by at most
    2u of itself and a sum of dim products in any order by at most
    gamma_dim = dim u / (1 - dim u) of the sum of their magnitudes (u =
    2^-24; Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
    2002, section 3.1), the float64 sum's own error is a billionth of that,
    and the magnitudes sum to at most |W[:, r]| |v| = |W[:, r]|
    (Cauchy-Schwarz). It is doubled for margin, and a floor covers products
    that underflow."""
    w = projections(dim, bits, code)[2]
    gamma = dim * _U32 / (1.0 - dim * _U32)
    norms = np.sqrt((w * w).sum(axis=0))
    bound = 2.0 * (gamma * (1.0 + 2.0 * _U32) + 2.0 * _U32 + _U32 ** 2) * norms * (1.0 + 1e-9) + 1e-30
    # rounded up to float32, so that the comparison in float32 loses nothing
    b32 = bound.astype(np.float32)
    b32 = np.where(b32.astype(np.float64) < bound, np.nextafter(b32, np.float32(np.inf)), b32)
    w32 = np.ascontiguousarray(w, dtype=np.float32)
    return np.ascontiguousarray(w32.T), b32.astype(np.float32), w32, strips(w32)


def check_dims(dim: int, bits: int) -> None:
    """Raise ValueError naming the bad argument."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 64 or bits % 64:
        raise ValueError(f"bits must be a positive multiple of 64, got {bits!r}")


def encode(seed: int, identities: np.ndarray, fingers: np.ndarray,
           encounters: np.ndarray, captures: np.ndarray, qualities: np.ndarray,
           dim: int = 64, bits: int = 128, noise: float = 1.0,
           code: str = "simhash", vectors: bool = True,
           capture_noise: float = 1.0,
           quality_weighting: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate and encode one impression per row of the key arrays.

    All inputs have shape (n,) or broadcast to it: identity, finger position
    1..10, encounter (0 = enrolment), capture type index, quality 1..5;
    noise scales the extraction errors, capture_noise the placement
    (``fpscale.synth.impressions``);
    code picks the code matrix (``projections``); quality_weighting scales
    each direction by ``quality_weights`` at the row's quality before the
    vector is normalised (and its code taken). Returns float32 unit
    vectors (n, dim) ((n, 0) with vectors=False: the same codes, no
    vectors kept), packed binary codes uint8 (n, bits // 8), and the
    minutiae count of each impression (n,) int32.
    Row t depends only on (seed, row t of the keys): any split of the rows
    gives the same bytes.
    """
    check_dims(dim, bits)
    ids = np.ascontiguousarray(identities, dtype=np.int64)
    n = ids.shape[0]
    keys = [np.ascontiguousarray(np.broadcast_to(a, (n,)), dtype=np.int64)
            for a in (fingers, encounters, captures, qualities)]
    mean, _, simhash = projections(int(dim), int(bits), code)
    out_v = np.empty((n if vectors else 0, dim), dtype=np.float32)
    out_b = np.empty((n, bits // 8), dtype=np.uint8)
    counts = np.empty(n, dtype=np.int32)
    if n:
        _encode_batch(int(seed), ids, keys[0], keys[1], keys[2], keys[3], float(noise),
                      mean, projection_basis(int(dim), int(bits), code), simhash,
                      sign_screen(int(dim), int(bits), code), out_v, out_b, counts,
                      float(capture_noise), quality_weights(int(dim), bool(quality_weighting)))
    return (out_v if vectors else np.empty((n, 0), dtype=np.float32)), out_b, counts


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
