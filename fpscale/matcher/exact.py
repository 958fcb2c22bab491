"""Exact search in numba: float32 inner product and binary Hamming.

Both keep each probe's top-L in a small heap updated while the gallery is
scanned block by block, so no probe ever holds a full N-wide score row.

Float: each numba thread takes a block of probes; the scores of a (probe
block x gallery block) tile come from a register-blocked numba kernel (four
probes by two records at a time), and the top-L pass reads the tile while it
is still in cache. Not BLAS: an sgemm's result for one (probe, record) pair
can depend on where the pair falls in the tile (OpenBLAS's Haswell kernels
move about 4% of scores by an ulp), so ties and near-ties would be broken
differently with another chunk size, shard count or thread count. Here
every pair is summed by the same instructions wherever it sits, and
``inner_products`` / ``paired_inner_products`` give the same bits to the
ladder and to mate scores. The order of each sum is written in the kernel
(eight lanes of fused multiply-adds, then a fixed tree), not left to the
vectoriser, which orders it by target: so the bits are also the same on
every CPU (tests/test_cpu_independence.py).

Binary: a numba kernel XORs and popcounts 64-bit words (LLVM's ctpop, one
instruction on x86-64 and arm64), a block of probes against each gallery
code so that every code is read once per probe block.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from fpscale import simd

from fpscale.matcher.checks import MatcherInputError, check_ids, check_vectors
from fpscale.matcher.interface import Backend
from fpscale.matcher.topk import empty_lists, heap_push, heap_sort_rows


@contextmanager
def thread_count(n: int | None):
    """Run numba's parallel loops with n threads (None: leave as they are)."""
    if n is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


@njit(cache=True, inline="always")
def _select_row(row: np.ndarray, ids: np.ndarray, row_s: np.ndarray, row_i: np.ndarray) -> None:
    # Most scores lose to the current L-th best; test 16 at a time with a
    # branch-free max and visit single scores only in chunks that can win.
    nb = row.shape[0]
    worst = row_s[0]
    for c0 in range(0, nb, 16):
        c1 = min(nb, c0 + 16)
        m = row[c0]
        for j in range(c0 + 1, c1):
            v = row[j]
            m = v if v > m else m
        if m < worst:
            continue
        for j in range(c0, c1):
            s = row[j]
            if s >= worst:
                heap_push(row_s, row_i, s, ids[j])
                worst = row_s[0]


def _is_rows(a) -> bool:
    return (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 2
            and a.layout == "C")


@intrinsic
def _dots_4x2_lanes(typingctx, p, g, rows):
    # Inner products of probe rows p[a0..a3] with gallery rows g[j0], g[j1]
    # (rows = (a0, a1, a2, a3, j0, j1)), float32. Hand-written because the
    # order of a vectorised sum must not be the compiler's: with fastmath
    # "reassoc" LLVM chose it by target, and AVX2 and AVX-512 machines gave
    # different last bits. Here every sum is eight lanes, lane l adding
    # x[k] * y[k] for k = l, l + 8, ... by fused multiply-adds, then the
    # lanes' halves sum, then the remaining d % 8 products in order.
    if not (_is_rows(p) and _is_rows(g) and isinstance(rows, types.UniTuple)
            and rows.count == 6 and isinstance(rows.dtype, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pty, gty, _ = signature.args
        pv, gv, rv = args
        r = cgutils.unpack_tuple(builder, rv, 6)
        d = cgutils.unpack_tuple(builder, context.make_array(pty)(context, builder, pv).shape, 2)[1]
        zero = ir.Constant(d.type, 0)
        xs = [simd.element_pointer(context, builder, pty, pv, r[i], zero) for i in range(4)]
        ys = [simd.element_pointer(context, builder, gty, gv, r[4 + j], zero) for j in range(2)]
        acc = [cgutils.alloca_once_value(builder, ir.Constant(simd.VEC32, [0.0] * simd.LANES))
               for _ in range(8)]
        blocks = builder.lshr(d, ir.Constant(d.type, 3))
        with cgutils.for_range(builder, blocks) as loop:
            k = builder.shl(loop.index, ir.Constant(d.type, 3))
            x = [simd.load32(builder, builder.gep(xs[i], [k])) for i in range(4)]
            y = [simd.load32(builder, builder.gep(ys[j], [k])) for j in range(2)]
            for i in range(4):
                for j in range(2):
                    a = acc[2 * i + j]
                    builder.store(simd.fma(builder, x[i], y[j], builder.load(a)), a)
        sums = [cgutils.alloca_once_value(builder, simd.halves_sum(builder, builder.load(a)))
                for a in acc]
        done = builder.shl(blocks, ir.Constant(d.type, 3))
        with cgutils.for_range(builder, builder.sub(d, done)) as loop:
            k = builder.add(done, loop.index)
            x = [builder.load(builder.gep(xs[i], [k])) for i in range(4)]
            y = [builder.load(builder.gep(ys[j], [k])) for j in range(2)]
            for i in range(4):
                for j in range(2):
                    s = sums[2 * i + j]
                    builder.store(simd.fma(builder, x[i], y[j], builder.load(s)), s)
        return context.make_tuple(builder, signature.return_type, [builder.load(s) for s in sums])

    return types.UniTuple(types.float32, 8)(p, g, rows), codegen


@njit(cache=True, inline="always")
def _dots_4x2(p: np.ndarray, q: tuple, g: np.ndarray, j0: int, j1: int) -> tuple:
    # inner products of probe rows q[0..3] with gallery rows j0, j1: eight
    # sums, each by the same instructions on every CPU
    return _dots_4x2_lanes(p, g, (q[0], q[1], q[2], q[3], j0, j1))


@njit(cache=True)
def _score_tile(p: np.ndarray, q0: int, q1: int, g: np.ndarray, g0: int, g1: int,
                out: np.ndarray) -> None:
    # out[q - q0, j - g0] = <p[q], g[j]>. Rows past the end repeat the last
    # one, so a tile's edge runs the same loop as its middle
    for qa in range(q0, q1, 4):
        q = (qa, min(qa + 1, q1 - 1), min(qa + 2, q1 - 1), min(qa + 3, q1 - 1))
        for ja in range(g0, g1, 2):
            jb = min(ja + 1, g1 - 1)
            s = _dots_4x2(p, q, g, ja, jb)
            for i in range(4):
                out[q[i] - q0, ja - g0] = s[2 * i]
                out[q[i] - q0, jb - g0] = s[2 * i + 1]


@njit(cache=True, parallel=True)
def inner_products(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Scores (Q, n) float32 of probes (Q, d) against gallery rows (n, d),
    float32 C-contiguous: the same bits as numba-flat's search gives each
    pair, whatever the shapes."""
    nq, n = probes.shape[0], gallery.shape[0]
    out = np.empty((nq, n), dtype=np.float32)
    nblocks = (nq + 63) // 64
    for b in prange(nblocks):
        q0 = b * 64
        q1 = min(nq, q0 + 64)
        _score_tile(probes, q0, q1, gallery, 0, n, out[q0:q1])
    return out


@njit(cache=True, parallel=True)
def paired_inner_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise scores (n,) float32 of a[i] with b[i] (both (n, d) float32
    C-contiguous), with the bits ``inner_products`` gives the same pair: each
    is a one-by-one tile of the same kernel."""
    n = a.shape[0]
    out = np.empty((n, 1), dtype=np.float32)
    for i in prange(n):
        _score_tile(a, i, i + 1, b, i, i + 1, out[i:i + 1])
    return out[:, 0]


@njit(cache=True, parallel=True)
def gathered_inner_products(a: np.ndarray, ai: np.ndarray, b: np.ndarray,
                            bi: np.ndarray) -> np.ndarray:
    """Scores (n,) float32 of a[ai[i]] with b[bi[i]] (a, b float32
    C-contiguous rows; ai, bi (n,) int64), the bits ``inner_products`` gives
    each pair, without gathering the rows into copies."""
    n = ai.shape[0]
    out = np.empty((n, 1), dtype=np.float32)
    for i in prange(n):
        _score_tile(a, ai[i], ai[i] + 1, b, bi[i], bi[i] + 1, out[i:i + 1])
    return out[:, 0]


@njit(cache=True, parallel=True)
def _flat_scan(probes: np.ndarray, gallery: np.ndarray, gids: np.ndarray,
               hs: np.ndarray, hi: np.ndarray, probe_block: int, gallery_block: int) -> None:
    # Each thread owns a block of probes and walks the gallery in blocks:
    # one tile of scores per (probe block x gallery block), then top-L
    # selection while the tile is still in cache.
    nq = probes.shape[0]
    n = gallery.shape[0]
    nblocks = (nq + probe_block - 1) // probe_block
    for b in prange(nblocks):
        q0 = b * probe_block
        q1 = min(nq, q0 + probe_block)
        buf = np.empty((q1 - q0, gallery_block), dtype=np.float32)
        for g0 in range(0, n, gallery_block):
            g1 = min(n, g0 + gallery_block)
            _score_tile(probes, q0, q1, gallery, g0, g1, buf)
            for q in range(q1 - q0):
                _select_row(buf[q, :g1 - g0], gids[g0:g1], hs[q0 + q], hi[q0 + q])


def _rows_since(blocks: list, ids: list, start: int, axis: int, empty: dict) -> dict:
    # the records after the first `start` of blocks added in order (records
    # along `axis` of each block), and their ids; `empty` is {key: the state
    # with no records}
    key, none = next(iter(empty.items()))
    out, out_ids, at = [], [], 0
    for block, i in zip(blocks, ids):
        lo = max(start - at, 0)
        if lo < len(i):
            out.append(block[lo:] if axis == 0 else block[:, lo:])
            out_ids.append(i[lo:])
        at += len(i)
    if not out:
        return {key: none, "ids": np.zeros(0, np.int64)}
    return {key: np.concatenate(out, axis=axis), "ids": np.concatenate(out_ids)}


class NumbaFlatIP(Backend):
    """Exact inner-product search over float32 vectors."""

    name = "numba-flat"
    # 256 probes x 1024 records: a 1 MiB score tile, and at 128 dimensions a
    # 512 KiB gallery block that stays in L2 while every probe passes it
    PROBE_BLOCK = 256
    GALLERY_BLOCK = 1024

    def __init__(self, d: int, threads: int | None = None) -> None:
        super().__init__(d, threads)
        self._vecs: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []

    @staticmethod
    def memory_estimate(n: int, d: int) -> int:
        return n * (4 * d + 8)

    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._vecs) + sum(i.nbytes for i in self._ids)

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:
        self._vecs.append(np.array(data, dtype=np.float32, order="C"))
        self._ids.append(ids.copy())

    def export_state(self) -> dict[str, np.ndarray]:
        if not self._vecs:
            return {"vecs": np.zeros((0, self.d), np.float32), "ids": np.zeros(0, np.int64)}
        return {"vecs": np.concatenate(self._vecs), "ids": np.concatenate(self._ids)}

    appendable = True

    def export_rows(self, start: int) -> dict[str, np.ndarray]:
        return _rows_since(self._vecs, self._ids, start, 0, {"vecs": np.zeros((0, self.d), np.float32)})

    @staticmethod
    def join_states(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {"vecs": np.concatenate([p["vecs"] for p in parts]),
                "ids": np.concatenate([p["ids"] for p in parts])}

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        self.import_parts([state])

    def import_parts(self, parts: list[dict[str, np.ndarray]]) -> None:
        # each part stays a block of its own, as the blocks added while
        # building; nothing changes unless every part is valid
        vecs, ids = [], []
        for p in parts:
            vecs.append(check_vectors("state vecs", p["vecs"], self.d))
            ids.append(check_ids(p["ids"], vecs[-1].shape[0]))  # the kernel reads ids[j] for every row j
        self._vecs, self._ids = vecs, ids
        self.ntotal = sum(len(i) for i in ids)

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        hs, hi = empty_lists(probes.shape[0], k)
        n = self.threads or numba.get_num_threads()
        # fewer probes than threads x block: smaller blocks keep all threads busy
        pb = max(8, min(self.PROBE_BLOCK, -(-probes.shape[0] // n)))
        with thread_count(self.threads):
            for vecs, ids in zip(self._vecs, self._ids):
                _flat_scan(probes, vecs, ids, hs, hi, pb, self.GALLERY_BLOCK)
            heap_sort_rows(hs, hi)
        return hi, hs


@intrinsic
def _popcount64(typingctx, x):
    # LLVM's ctpop: numba has no popcount of its own
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True)
def popcount64(x: np.uint64) -> np.uint64:
    """Number of set bits of a uint64."""
    return _popcount64(x)


@njit(cache=True, inline="always")
def offer_distance(dist: np.uint64, bits: int, gid: int, hs: np.ndarray, hi: np.ndarray) -> np.uint64:
    """Offer code gid at Hamming distance dist to the top-L heap (hs, hi) of
    scores bits - distance; returns the largest distance that can still enter."""
    heap_push(hs, hi, np.float32(bits - np.int64(dist)), gid)
    return max_distance(bits, hs[0])


@njit(cache=True, inline="always")
def max_distance(bits: int, worst: float) -> np.uint64:
    """The largest Hamming distance that can enter a heap whose worst score is worst."""
    # scores are bits - distance, so "score >= worst" is "distance <= bits - worst"
    if worst == -np.inf:
        return np.uint64(bits)
    return np.uint64(bits - np.int64(worst))


@njit(cache=True, inline="always")
def _four_words(a: np.ndarray, planes: np.ndarray, w: int, g0: int, g1: int,
                dist: np.ndarray, first: bool) -> None:
    # dist[j - g0] (+)= the popcounts of words w..w+3 of code j xor a
    a0, a1, a2, a3 = a[w], a[w + 1], a[w + 2], a[w + 3]
    p0 = planes[w, g0:g1]
    p1 = planes[w + 1, g0:g1]
    p2 = planes[w + 2, g0:g1]
    p3 = planes[w + 3, g0:g1]
    if first:
        for j in range(g1 - g0):
            dist[j] = (_popcount64(a0 ^ p0[j]) + _popcount64(a1 ^ p1[j])
                       + _popcount64(a2 ^ p2[j]) + _popcount64(a3 ^ p3[j]))
    else:
        for j in range(g1 - g0):
            dist[j] += (_popcount64(a0 ^ p0[j]) + _popcount64(a1 ^ p1[j])
                        + _popcount64(a2 ^ p2[j]) + _popcount64(a3 ^ p3[j]))


@njit(cache=True, inline="always")
def hamming_distances(a: np.ndarray, planes: np.ndarray, g0: int, g1: int,
                      dist: np.ndarray, below: int = 0) -> tuple:
    """dist[j - g0] (uint64) = Hamming distance of the code a (W uint64
    words) to code j of the (W, n) word planes, for j in [g0, g1). Returns
    (the smallest of them (64 W + 1 when none), how many are below
    ``below``), both int64."""
    # Four planes per pass when W allows: dist is read once per four words.
    # The last pass also takes the minimum and the count, while dist[j] is
    # still in a register: a separate pass over dist cost the code ladder's
    # scan 30% of its time (dist had left L1 behind the planes).
    W = a.shape[0]
    m = g1 - g0
    best = np.uint64(64 * W + 1)
    count = np.uint64(0)
    under = np.uint64(max(below, 0))
    if W % 4 == 0:
        for w in range(0, W - 4, 4):
            _four_words(a, planes, w, g0, g1, dist, w == 0)
        w = W - 4
        a0, a1, a2, a3 = a[w], a[w + 1], a[w + 2], a[w + 3]
        p0 = planes[w, g0:g1]
        p1 = planes[w + 1, g0:g1]
        p2 = planes[w + 2, g0:g1]
        p3 = planes[w + 3, g0:g1]
        if W == 4:
            dist[:m] = 0
        for j in range(m):
            d = dist[j] + (_popcount64(a0 ^ p0[j]) + _popcount64(a1 ^ p1[j])
                           + _popcount64(a2 ^ p2[j]) + _popcount64(a3 ^ p3[j]))
            dist[j] = d
            best = d if d < best else best
            count += np.uint64(d < under)
    else:
        dist[:m] = 0
        for w in range(W - 1):
            aw = a[w]
            p = planes[w, g0:g1]
            for j in range(m):
                dist[j] += _popcount64(aw ^ p[j])
        aw = a[W - 1]
        p = planes[W - 1, g0:g1]
        for j in range(m):
            d = dist[j] + _popcount64(aw ^ p[j])
            dist[j] = d
            best = d if d < best else best
            count += np.uint64(d < under)
    return np.int64(best), np.int64(count)


@njit(cache=True, inline="always")
def offer_codes(dist: np.ndarray, lo: int, hi: int, gids: np.ndarray, gid0: int, bits: int,
                hs: np.ndarray, hi_ids: np.ndarray) -> None:
    """Offer codes lo..hi-1 of a tile, at Hamming distances dist[j], to one
    probe's top-L heap (hs, hi_ids); code j's id is gids[j], or gid0 + j
    where gids is empty. Callers skip a tile whose smallest distance cannot
    enter (``hamming_distances`` returns it): once a list is full, most
    tiles of a large gallery hold no code that can."""
    maxd = max_distance(bits, hs[0])
    listed = gids.shape[0] > 0
    for j in range(lo, hi):
        if dist[j] <= maxd:
            maxd = offer_distance(dist[j], bits, gids[j] if listed else gid0 + j, hs, hi_ids)


@njit(cache=True, parallel=True)
def _hamming_scan(qc: np.ndarray, planes: np.ndarray, gids: np.ndarray, gid0: int, bits: int,
                  hs: np.ndarray, hi: np.ndarray, tile: int, nthreads: int) -> None:
    # planes: the gallery as (W, n) 64-bit word planes, so that pass 1 reads
    # every word plane with unit stride and LLVM vectorises it (vpopcntq
    # where the CPU has it): about 4x faster than (n, W) rows here. Each
    # thread takes a share of the probes and all of them reuse a cache-sized
    # tile before the next is read; pass 2 offers the few codes that can
    # still enter the top-L. Comparisons stay in integers. Code j's id is
    # gids[j], or gid0 + j where gids is empty (consecutive ids).
    nq, W = qc.shape
    n = planes.shape[1]
    per = (nq + nthreads - 1) // nthreads
    for t in prange(nthreads):
        q0 = t * per
        q1 = min(nq, q0 + per)
        dist = np.empty(tile, dtype=np.uint64)
        for g0 in range(0, n, tile):
            g1 = min(n, g0 + tile)
            for q in range(q0, q1):
                best, _ = hamming_distances(qc[q], planes, g0, g1, dist)
                if best <= np.int64(max_distance(bits, hs[q, 0])):
                    offer_codes(dist, 0, g1 - g0, gids[g0:g1], gid0 + g0, bits, hs[q], hi[q])


class NumbaHamming(Backend):
    """Exact Hamming search over packed binary codes; score = bits - distance."""

    name = "numba-hamming"
    binary = True
    TILE = 2048  # gallery codes per tile: W x 16 KiB of planes, in L1/L2

    def __init__(self, d: int, threads: int | None = None) -> None:
        super().__init__(d, threads)
        self._codes: list[np.ndarray] = []
        # per block: its ids, or none when they are consecutive from _first
        # (fpscale's gallery chunks): 8 bytes a record less, 2.4 GB at 300M
        self._ids: list[np.ndarray] = []
        self._first: list[int] = []

    @staticmethod
    def memory_estimate(n: int, d: int) -> int:
        # codes only: the ids of consecutive records are not stored
        return n * (d // 8)

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._codes) + sum(i.nbytes for i in self._ids)

    def _keep(self, planes: np.ndarray, ids: np.ndarray) -> None:
        n = len(ids)
        run = n > 0 and int(ids[-1]) - int(ids[0]) == n - 1 and bool((np.diff(ids) == 1).all())
        self._codes.append(planes)
        self._ids.append(np.zeros(0, np.int64) if run else ids.copy())
        self._first.append(int(ids[0]) if run else -1)

    def _block_ids(self, b: int, lo: int = 0) -> np.ndarray:
        # ids of block b from its record lo on
        if self._first[b] < 0:
            return self._ids[b][lo:]
        return np.arange(self._first[b] + lo, self._first[b] + self._codes[b].shape[1], dtype=np.int64)

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:
        # stored as (W, n) word planes: see _hamming_scan
        self._keep(np.ascontiguousarray(np.ascontiguousarray(data).view(np.uint64).T), ids)

    def export_state(self) -> dict[str, np.ndarray]:
        return self.export_rows(0)

    appendable = True

    def export_rows(self, start: int) -> dict[str, np.ndarray]:
        planes, ids, at = [], [], 0
        for b, block in enumerate(self._codes):
            lo = max(start - at, 0)
            if lo < block.shape[1]:
                planes.append(block[:, lo:])
                ids.append(self._block_ids(b, lo))
            at += block.shape[1]
        if not planes:
            return {"planes": np.zeros((self.d // 64, 0), np.uint64), "ids": np.zeros(0, np.int64)}
        return {"planes": np.concatenate(planes, axis=1), "ids": np.concatenate(ids)}

    @staticmethod
    def join_states(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {"planes": np.concatenate([p["planes"] for p in parts], axis=1),
                "ids": np.concatenate([p["ids"] for p in parts])}

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        self.import_parts([state])

    def import_parts(self, parts: list[dict[str, np.ndarray]]) -> None:
        # each part stays a block of its own, as the blocks added while
        # building; nothing changes unless every part is valid
        checked = []
        for p in parts:
            planes = np.asarray(p["planes"])
            if planes.dtype != np.uint64 or planes.ndim != 2 or planes.shape[0] != self.d // 64:
                raise MatcherInputError(f"state planes must be uint64 ({self.d // 64}, n), got "
                                        f"{planes.dtype} {planes.shape}")
            checked.append((np.ascontiguousarray(planes), check_ids(p["ids"], planes.shape[1])))
        self._codes, self._ids, self._first = [], [], []
        for planes, ids in checked:
            self._keep(planes, ids)
        self.ntotal = sum(c.shape[1] for c in self._codes)

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        hs, hi = empty_lists(probes.shape[0], k)
        qc = np.ascontiguousarray(probes).view(np.uint64)
        with thread_count(self.threads):
            for codes, ids, first in zip(self._codes, self._ids, self._first):
                _hamming_scan(qc, codes, ids, max(first, 0), self.d, hs, hi, self.TILE,
                              numba.get_num_threads())
            heap_sort_rows(hs, hi)
        return hi, hs
