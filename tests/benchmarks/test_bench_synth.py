"""Generation and encoding, minutiae re-scoring, and the default scenario end to end."""

from functools import lru_cache

import numpy as np
from numba import njit

from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import load_scenario
from fpscale.matcher.minutiae import match_many
from fpscale.synth import embedding, features
from fpscale.synth.embedding import encode
from fpscale.synth.features import feature_batch
from fpscale.synth.impressions import LEGACY_FLAT, PLAIN, ROLLED, impression_batch

from .conftest import MEDIANS, ROUNDS, ratio, record, scaled

N_IMPRESSIONS = 50_000


def _time_encode(benchmark, name: str, keys: tuple, **settings) -> None:
    # generate and encode one impression per row of keys (identity, finger,
    # encounter, capture, quality; scalars broadcast) on all numba threads
    n = len(keys[0])
    encode(1, *(k[:10] if np.ndim(k) else k for k in keys), **settings)  # compile or load
    benchmark.pedantic(encode, args=(1, *keys), kwargs=settings, rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, name)
    MEDIANS["synth_n"] = n
    benchmark.extra_info["impressions_per_s"] = n / benchmark.stats.stats.median


def _generate_and_encode(benchmark, capture: int, name: str) -> None:
    # single-finger impressions (right index, quality 2) at the default
    # encoding (64-d float vector, 128-bit code)
    _time_encode(benchmark, name, (np.arange(scaled(N_IMPRESSIONS)), 2, 1, capture, 2))


def test_generate_and_encode_plain_impressions(benchmark):
    """Issue target: >= 50,000 single-finger plain impressions per second on 2 cores."""
    _generate_and_encode(benchmark, PLAIN, "synth-plain-impressions")


def test_generate_and_encode_rolled_impressions(benchmark):
    """Rolled gallery impressions (about 96 minutiae against 52 plain): the
    project aims at 200,000 per second on 2 cores."""
    _generate_and_encode(benchmark, ROLLED, "synth-rolled-impressions")


# the national scenarios' encoding (scomm-130m, ident-300m): the best-2012
# profile's 256 dimensions, a 256-bit ITQ code and extraction noise, with
# qualities 1..5 in turn; fingers 2 and 7 as those scenarios search
NATIONAL = {"dim": 256, "bits": 256, "noise": 0.5355, "code": "itq"}


def _generate_and_encode_national(benchmark, capture: int, name: str) -> None:
    ids = np.arange(scaled(N_IMPRESSIONS))
    keys = (ids, np.where(ids % 2 == 0, 2, 7), 0, capture, 1 + ids % 5)
    _time_encode(benchmark, name, keys, **NATIONAL)


def test_generate_and_encode_rolled_impressions_national(benchmark):
    """Rolled gallery impressions as the 130M and 300M scenarios encode them."""
    _generate_and_encode_national(benchmark, ROLLED, "synth-rolled-national")


def test_generate_and_encode_legacy_flats_national(benchmark):
    """Legacy flat gallery impressions as the 130M and 300M scenarios encode them."""
    _generate_and_encode_national(benchmark, LEGACY_FLAT, "synth-legacy-flat-national")


def _national_records(benchmark, name: str, vectors: bool) -> None:
    # whole two-index records of scomm-130m's population, as its gallery
    # pass generates them (codes only) and its refinement regenerates them
    # (with the float vectors)
    from fpscale.synth.population import gallery_chunk
    pop = load_scenario("scomm-130m").population
    n = scaled(N_IMPRESSIONS) // 2
    gallery_chunk(pop, 0, 10, vectors)  # compile or load
    benchmark.pedantic(gallery_chunk, args=(pop, 0, n, vectors), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, name)


def test_national_records_codes_only(benchmark):
    _national_records(benchmark, "records-national-codes", False)


def test_national_records_with_vectors(benchmark):
    _national_records(benchmark, "records-national-vectors", True)


def test_ratio_records_with_vectors_vs_codes_only():
    r = ratio("records-national-vectors", "records-national-codes")
    print(f"national records, with float vectors / codes only throughput: {r:.2f}x")
    # 0.85 measured on 2 cores, 0.62 when the records' vectors were
    # scattered into place through a (record, finger) index (the same run
    # of both, December 2026)
    assert r > 0.72


@njit(cache=True)
def _float64_signs(v: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    for i in range(v.shape[0]):
        embedding._signs(v[i], w, out[i])


@njit(cache=True)
def _screened_signs(v: np.ndarray, w: np.ndarray, screen: tuple, out: np.ndarray) -> None:
    v32 = np.empty(v.shape[1], dtype=np.float32)
    acc = np.empty(w.shape[1], dtype=np.float32)
    for i in range(v.shape[0]):
        embedding._screened_signs(v[i], w, screen, v32, acc, out[i])


@njit(cache=True)
def _tiled_signs(v: np.ndarray, w: np.ndarray, screen: tuple, out: np.ndarray) -> None:
    # as the encoder takes them: the float32 sums of PROJECT_BATCH vectors
    # at a time in tiles, then the float64 sums where those lie near 0
    nb_max = embedding.PROJECT_BATCH
    v32 = np.empty((nb_max, v.shape[1]), dtype=np.float32)
    acc = np.empty((nb_max, w.shape[1]), dtype=np.float32)
    for t0 in range(0, v.shape[0], nb_max):
        nb = min(nb_max, v.shape[0] - t0)
        for b in range(nb):
            for k in range(v.shape[1]):
                v32[b, k] = np.float32(v[t0 + b, k])
        embedding._project_rows(v32, nb, (screen[2], screen[3]), acc)
        for b in range(nb):
            embedding._settled_signs(v[t0 + b], w, screen[1], acc[b], out[t0 + b])


def _unit_vectors(dim: int) -> np.ndarray:
    v = np.random.default_rng(2).standard_normal((scaled(N_IMPRESSIONS), dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_code_bits_from_float64_sums(benchmark):
    """The national code's bits (256-d, 256-bit ITQ) as float64 sums, one thread."""
    w = embedding.projections(256, 256, "itq")[2]
    v = _unit_vectors(256)
    out = np.empty((len(v), 32), np.uint8)
    _float64_signs(v[:2], w, out[:2])
    benchmark.pedantic(_float64_signs, args=(v, w, out), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, "code-bits-float64")


def _time_code_bits(benchmark, kernel, name: str) -> None:
    # the national code's bits of unit vectors by kernel, one thread; they
    # must be the float64 sums' signs
    w = embedding.projections(256, 256, "itq")[2]
    screen = embedding.sign_screen(256, 256, "itq")
    v = _unit_vectors(256)
    out = np.empty((len(v), 32), np.uint8)
    kernel(v[:2], w, screen, out[:2])
    benchmark.pedantic(kernel, args=(v, w, screen, out), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, name)
    want = np.empty_like(out)
    _float64_signs(v, w, want)
    assert np.array_equal(out, want)


def test_code_bits_screened(benchmark):
    """The same bits, float32 sums one vector at a time, float64 where a
    sum lies within its error bound of 0 (the same bytes)."""
    _time_code_bits(benchmark, _screened_signs, "code-bits-screened")


def test_code_bits_tiled(benchmark):
    """The same bits, their float32 sums in tiles of 4 vectors x 16 bits
    held in registers (as the encoder takes them)."""
    _time_code_bits(benchmark, _tiled_signs, "code-bits-tiled")


def test_ratio_tiled_code_bits_vs_screened():
    r = ratio("code-bits-tiled", "code-bits-screened")
    print(f"code bits, tiled / screened one vector at a time throughput: {r:.2f}x")
    # a floor under the measured ratio: it fails if the tiles' sums went
    # back to memory every row or the float64 path ran for every bit
    assert r > 1.3


def test_ratio_screened_code_bits_vs_float64():
    r = ratio("code-bits-screened", "code-bits-float64")
    print(f"code bits, screened / float64 throughput: {r:.2f}x")
    # a floor well under the measured ratio: it fails if the float32 sums
    # lost their vectorisation or the float64 path ran for every bit
    assert r > 1.3


@njit(cache=True)
def _one_row_projection(xs: np.ndarray, proj: np.ndarray, v32: np.ndarray) -> None:
    # the projection as the encoder made it before: one basis row per pass
    # over the accumulators, zeros skipped by a branch (the same sums)
    for t0 in range(0, xs.shape[0], v32.shape[0]):
        nb = min(v32.shape[0], xs.shape[0] - t0)
        v32[:nb, :] = 0.0
        for h in range(proj.shape[0]):
            for b in range(nb):
                x = xs[t0 + b, h]
                if x != 0.0:
                    for k in range(proj.shape[1]):
                        v32[b, k] += x * proj[h, k]


@njit(cache=True)
def _eight_row_projection(xs: np.ndarray, proj: np.ndarray, v32: np.ndarray) -> None:
    # as the encoder made it before the tiles: eight basis rows per pass
    # over the accumulators (the same sums)
    dim = proj.shape[1]
    nf = proj.shape[0]
    for t0 in range(0, xs.shape[0], v32.shape[0]):
        nb = min(v32.shape[0], xs.shape[0] - t0)
        v32[:nb, :] = 0.0
        h = 0
        while h + 8 <= nf:
            p0, p1, p2, p3 = proj[h], proj[h + 1], proj[h + 2], proj[h + 3]
            p4, p5, p6, p7 = proj[h + 4], proj[h + 5], proj[h + 6], proj[h + 7]
            for b in range(nb):
                x = xs[t0 + b]
                x0, x1, x2, x3 = x[h], x[h + 1], x[h + 2], x[h + 3]
                x4, x5, x6, x7 = x[h + 4], x[h + 5], x[h + 6], x[h + 7]
                v = v32[b]
                for k in range(dim):
                    s = ((v[k] + x0 * p0[k]) + x1 * p1[k]) + x2 * p2[k]
                    s = ((s + x3 * p3[k]) + x4 * p4[k]) + x5 * p5[k]
                    v[k] = (s + x6 * p6[k]) + x7 * p7[k]
            h += 8
        for r in range(h, nf):
            for b in range(nb):
                x = xs[t0 + b, r]
                for k in range(dim):
                    v32[b, k] += x * proj[r, k]


@njit(cache=True)
def _tiled_projection(xs: np.ndarray, basis: tuple, v32: np.ndarray) -> None:
    for t0 in range(0, xs.shape[0], v32.shape[0]):
        nb = min(v32.shape[0], xs.shape[0] - t0)
        embedding._project_rows(xs[t0:t0 + nb], nb, basis, v32)


@lru_cache(maxsize=1)
def _centred_features() -> tuple:
    # centred rolled features as the national scenarios project them; made
    # once for both projection benchmarks (neither writes to them)
    mean, proj = embedding.projections(256, 256, "itq")[:2]
    n = scaled(N_IMPRESSIONS) // 10
    ids = np.arange(n)
    feat = feature_batch(1, ids, np.where(ids % 2 == 0, 2, 7), np.zeros(n, np.int64),
                         np.full(n, ROLLED), 1 + ids % 5, mean)
    return (feat - mean).astype(np.float32), proj


def test_projection_one_row_per_pass(benchmark):
    """The national projection (752 features to 256 dimensions, float32),
    one basis row per pass over the accumulators, one thread."""
    xs, proj = _centred_features()
    v32 = np.empty((embedding.PROJECT_BATCH, proj.shape[1]), np.float32)
    _one_row_projection(xs[:2], proj, v32)
    benchmark.pedantic(_one_row_projection, args=(xs, proj, v32), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, "projection-one-row")


def _time_projection(benchmark, kernel, basis, name: str) -> None:
    # the national projection by kernel(xs, basis, v32), one thread; its
    # sums must be, bit for bit, those of one row per pass
    xs, proj = _centred_features()
    v32 = np.empty((embedding.PROJECT_BATCH, proj.shape[1]), np.float32)
    kernel(xs[:2], basis, v32)
    benchmark.pedantic(kernel, args=(xs, basis, v32), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, name)
    want = np.empty_like(v32)
    _one_row_projection(xs, proj, want)
    assert np.array_equal(v32.view(np.uint32), want.view(np.uint32))


def test_projection_eight_rows_per_pass(benchmark):
    """The same sums, eight rows per pass."""
    _time_projection(benchmark, _eight_row_projection, _centred_features()[1],
                     "projection-eight-rows")


def test_projection_tiles_in_registers(benchmark):
    """The same sums as the encoder takes them: tiles of 4 impressions x
    16 dimensions summed in registers over the whole basis."""
    _time_projection(benchmark, _tiled_projection, embedding.projection_basis(256, 256, "itq"),
                     "projection-tiles")


def test_ratio_eight_row_projection_vs_one_row():
    r = ratio("projection-eight-rows", "projection-one-row")
    print(f"projection, eight rows / one row per pass throughput: {r:.2f}x")
    # a floor under the measured ratio: it fails if the eight-row loop
    # went back to storing its accumulators once per row
    assert r > 1.2


def test_ratio_tiled_projection_vs_eight_rows():
    r = ratio("projection-tiles", "projection-eight-rows")
    print(f"projection, tiles in registers / eight rows per pass throughput: {r:.2f}x")
    # a floor under the measured ratio (1.76x, one thread, December 2026):
    # it fails if the tiles' sums went back to memory every basis row
    assert r > 1.25


@njit(cache=True)
def _scalar_pair_listing(ms: np.ndarray, ns: np.ndarray, buf: np.ndarray) -> int:
    # the pair listing as pair_histogram made it before: one candidate at a
    # time, written always and kept by adding its test to k
    r2 = features.R_MAX * features.R_MAX
    total = 0
    for a in range(ms.shape[0]):
        m = ms[a]
        k = 0
        for i in range(ns[a]):
            for j in range(i + 1, ns[a]):
                dx = m[j, 0] - m[i, 0]
                dy = m[j, 1] - m[i, 1]
                dd = dx * dx + dy * dy
                buf[0, k] = dx
                buf[1, k] = dy
                buf[2, k] = m[i, 2]
                buf[3, k] = m[j, 2]
                k += (dd < r2) & (dd != 0.0)
        total += k
    return total


@njit(cache=True)
def _vector_pair_listing(ms: np.ndarray, ns: np.ndarray, buf: np.ndarray) -> int:
    # the same pairs, eight candidates at a time (tested at once, then compacted)
    r2 = features.R_MAX * features.R_MAX
    total = 0
    for a in range(ms.shape[0]):
        m = ms[a]
        for i in range(ns[a]):
            buf[4, i] = m[i, 0]
            buf[5, i] = m[i, 1]
            buf[6, i] = m[i, 2]
        k = 0
        for i in range(ns[a]):
            for j0 in range(i + 1, ns[a], 8):
                k = features._near_pairs(buf, j0, ns[a], (buf[4, i], buf[5, i], buf[6, i]), r2, k)
        total += k
    return total


@lru_cache(maxsize=1)
def _rolled_minutiae() -> tuple:
    n = scaled(N_IMPRESSIONS) // 10
    return impression_batch(5, np.arange(n), np.where(np.arange(n) % 2 == 0, 2, 7),
                            np.zeros(n, np.int64), np.full(n, ROLLED), 1 + np.arange(n) % 5, 1.0)


def _time_pair_listing(benchmark, listing, name: str) -> tuple:
    # one listing kernel over the rolled impressions, compiled first; returns
    # its inputs (minutiae, counts, scratch)
    ms, ns = _rolled_minutiae()
    buf = features.pair_scratch(ms.shape[1])[0]
    listing(ms[:2], ns[:2], buf)
    benchmark.pedantic(listing, args=(ms, ns, buf), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, name)
    return ms, ns, buf


def test_pair_listing_one_candidate_at_a_time(benchmark):
    """Listing the minutia pairs within R_MAX of rolled impressions (all
    pairs, no bands), one candidate at a time, one thread."""
    _time_pair_listing(benchmark, _scalar_pair_listing, "pair-listing-scalar")


def test_pair_listing_eight_candidates_at_a_time(benchmark):
    """The same pairs as pair_histogram lists them: eight tested at once."""
    ms, ns, buf = _time_pair_listing(benchmark, _vector_pair_listing, "pair-listing-vector")
    assert _vector_pair_listing(ms, ns, buf) == _scalar_pair_listing(ms, ns, buf)


def test_ratio_vector_pair_listing_vs_scalar():
    r = ratio("pair-listing-vector", "pair-listing-scalar")
    print(f"pair listing, eight candidates / one candidate at a time throughput: {r:.2f}x")
    # a floor under the measured ratio (1.7-3.0 on an AVX2 host, December
    # 2026): it fails if the listing went back to one candidate at a time,
    # or to a compaction that LLVM expands through memory (0.76 there)
    assert r > 1.3


def test_minutiae_comparisons(benchmark):
    """Issue target: >= 12,500 1:1 comparisons per second per core (plain vs plain)."""
    n = 400
    ta, na = impression_batch(3, np.arange(n), np.full(n, 2), np.zeros(n, np.int64),
                              np.full(n, PLAIN), np.full(n, 2), 1.0)
    tb, nb = impression_batch(3, np.arange(n), np.full(n, 2), np.ones(n, np.int64),
                              np.full(n, PLAIN), np.full(n, 3), 1.0)
    ia = np.repeat(np.arange(n), 50)
    ib = (ia * 7 + np.tile(np.arange(50), n)) % n
    match_many(ta, na, tb, nb, ia[:10], ib[:10])
    benchmark.pedantic(match_many, args=(ta, na, tb, nb, ia, ib), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, "minutiae-1to1")
    MEDIANS["minutiae_n"] = len(ia)
    import numba
    benchmark.extra_info["comparisons_per_s_per_core"] = (
        len(ia) / benchmark.stats.stats.median / numba.get_num_threads())


def test_default_scenario_end_to_end(benchmark, tmp_path):
    sc = load_scenario("scenarios/default.toml")
    counter = iter(range(100))
    benchmark.pedantic(lambda: run_scenario(sc, tmp_path / f"r{next(counter)}", progress=False),
                       rounds=1, warmup_rounds=0)
