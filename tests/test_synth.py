import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit
from scipy import stats

from fpscale.synth import features
from fpscale.synth.embedding import encode, encode_set
from fpscale.synth.features import (N_ANGLE, N_BINS, N_DIST, N_RING, N_SPATIAL, R_MAX, R_SPATIAL,
                            pair_histogram, pair_scratch, spatial_histogram)
from fpscale.synth.fingers import MAX_MASTER, PATTERN_FREQUENCIES, master_finger, pattern_class
from fpscale.synth.impressions import CAPTURE_TYPES, capture_index, capture_windows, minutiae
from fpscale.synth.population import (NON_ENROLLED_BASE, PopulationSpec, chunks, gallery_chunk,
                              legacy_records, spec_from_dict, submission_chunk,
                              submission_impressions, submission_truth)

from rigid_motion import rigid


def test_pattern_class_frequencies_match_natural_ones():
    cls = np.array([pattern_class(3, i, 1 + i % 10) for i in range(20000)])
    counts = np.bincount(cls, minlength=5)
    expected = PATTERN_FREQUENCIES / PATTERN_FREQUENCIES.sum() * len(cls)
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_master_minutiae_inside_pad_spaced_and_counted():
    out = np.empty((MAX_MASTER, 4))
    ref = np.empty(3)
    counts = []
    for i in range(200):
        n, _ = master_finger(11, i, 2, out, ref)
        m = out[:n]
        counts.append(n)
        assert np.all(np.abs(m[:, 0]) < 12) and np.all(np.abs(m[:, 1]) < 15)
        assert np.all((m[:, 2] >= 0) & (m[:, 2] < 2 * np.pi))
        d = np.hypot(m[:, None, 0] - m[None, :, 0], m[:, None, 1] - m[None, :, 1])
        d[np.arange(n), np.arange(n)] = np.inf
        assert d.min() >= 0.9 - 1e-9
    assert 90 <= np.mean(counts) <= 130  # an index finger's full pad


_MASK64 = (1 << 64) - 1


def _splitmix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _reference_master(seed, identity, finger):
    # plain-Python reference of master_finger: the same draws, every cell
    # of the grid visited (not only those that can reach the pad), and the
    # spacing rule checked against every minutia kept before (no neighbour
    # cells)
    from fpscale.synth import fingers as F
    from fpscale.synth.rng import STREAM_MASTER, categorical, normal, open_stream
    st = open_stream(seed, identity, finger, -1, STREAM_MASTER)
    cls = categorical(st, F.PATTERN_CDF)
    sing = np.zeros((4, 2))
    nc, nd, theta0, arch_h, _, _ = F.singular_points(st, cls, sing)
    ax, ay = F.finger_semi_axes(finger)
    scale = 1.0 + 0.06 * normal(st)
    ax, ay = ax * scale, ay * scale
    presence = F.cell_presence(F.MINUTIA_DENSITY * np.exp(0.12 * normal(st)))
    p_cut = int(presence * 2.0 ** 22)
    gx = int(2.0 * ax / F.CELL) + 1
    gy = int((1.0 + F.CREASE_FRACTION) * ay / F.CELL) + 1
    s0 = int(st[0])
    gamma = 0x9E3779B97F4A7C15
    y_low = -F.CREASE_FRACTION * ay
    pts = []
    for r in range(gy):
        row = {}
        for parity in (0, 1):
            for c in range(parity, gx, 2):
                z = _splitmix((s0 + (r * gx + c + 1) * gamma) & _MASK64)
                x = -ax + (c + (z & 0x1FFFFF) * 2.0 ** -21) * F.CELL
                y = (y_low + r * F.CELL) + ((z >> 21) & 0x1FFFFF) * 2.0 ** -21 * F.CELL
                xe, ye = x * (1.0 / ax), y * (1.0 / ay)
                if (z >> 42) >= p_cut or xe * xe + ye * ye > 1.0 or y < y_low:
                    continue
                near = [q for q in pts + list(row.values())
                        if (q[0] - x) ** 2 + (q[1] - y) ** 2 < F.MIN_SPACING ** 2]
                if not near:
                    row[c] = (x, y)
        pts += [row[c] for c in sorted(row)]
    s1 = s0 + gx * gy * gamma
    out = []
    for i, (x, y) in enumerate(pts[:MAX_MASTER]):
        z = _splitmix((s1 + (i + 1) * gamma) & _MASK64)
        th = F.orientation(x, y, sing, nc, nd, theta0, arch_h) + np.pi * (z & 1)
        typ = F.ENDING if (z >> 11) * 2.0 ** -53 < F.ENDING_SHARE else F.BIFURCATION
        out.append((x, y, th % (2 * np.pi), typ))
    return np.array(out)


def test_master_cells_keep_exactly_what_a_brute_force_check_keeps():
    out = np.empty((MAX_MASTER, 4))
    ref = np.empty(3)
    for i in range(30):
        finger = 1 + i % 10
        n, _ = master_finger(4, i, finger, out, ref)
        expected = _reference_master(4, i, finger)
        assert n == len(expected)
        assert np.array_equal(out[:n, [0, 1, 3]], expected[:, [0, 1, 3]])
        d = np.abs(out[:n, 2] - expected[:, 2])
        assert np.all(np.minimum(d, 2 * np.pi - d) < 1e-9)


def test_master_process_gives_documented_spacing_and_density():
    # mean count: MINUTIA_DENSITY per mm^2 of 0.87 pi ax ay, times the mean
    # of the per-finger factors (size: 1 + 0.06 z, squared; density:
    # exp(0.12 z)); nearest neighbours never closer than MIN_SPACING, and
    # mostly within two spacings (a hard-core process, not a lattice)
    from fpscale.synth import fingers as F
    out = np.empty((MAX_MASTER, 4))
    ref = np.empty(3)
    for finger in (1, 2, 5):
        ax, ay = F.finger_semi_axes(finger)
        expected = (F.MINUTIA_DENSITY * 0.87 * np.pi * ax * ay * (1 + 0.06 ** 2)
                    * np.exp(0.12 ** 2 / 2))
        counts, nearest = [], []
        for i in range(3000):
            n, _ = master_finger(21, i, finger, out, ref)
            counts.append(n)
            if i < 300:
                m = out[:n]
                d = np.hypot(m[:, None, 0] - m[None, :, 0], m[:, None, 1] - m[None, :, 1])
                d[np.arange(n), np.arange(n)] = np.inf
                nearest.append(d.min(1))
        assert np.mean(counts) == pytest.approx(expected, rel=0.02)
        nearest = np.concatenate(nearest)
        assert nearest.min() >= F.MIN_SPACING
        assert 1.1 < np.median(nearest) < 1.25
        assert np.percentile(nearest, 90) < 2 * F.MIN_SPACING


def test_cell_presence_table_is_what_the_process_gives():
    from fpscale.synth import fingers as F
    measured = np.array([F.cell_density(p, 4000) for p in F._PRESENCE])
    assert np.allclose(measured, F._DENSITY, atol=1e-5)
    assert np.all(np.diff(F._DENSITY) > 0)
    for d in (0.2, 0.36, 0.5):  # the inverse
        assert np.interp(F.cell_presence(d), F._PRESENCE, F._DENSITY) == pytest.approx(d)


@pytest.mark.parametrize("capture,lo,hi", [("plain", 30, 60), ("rolled", 80, 110)])
def test_minutiae_counts_by_capture(capture, lo, hi):
    counts = [len(minutiae(5, i, 2, 1, capture, 2)) for i in range(300)]
    assert lo <= np.mean(counts) <= hi


@pytest.mark.parametrize("finger", [1, 2, 5])
@pytest.mark.parametrize("capture", ["rolled", "plain", "legacy_flat"])
@pytest.mark.parametrize("noise", [0.5, 1.0])
def test_expected_minutiae_is_the_generated_mean_or_a_little_above(finger, capture, noise):
    # the memory planner sizes re-scoring templates by it: it may lie a
    # little above what is generated, never below
    from fpscale.synth.impressions import expected_minutiae, impression_batch
    shares = (0.35, 0.35, 0.18, 0.09, 0.03)
    n = 1500
    q = 1 + np.random.default_rng(finger).choice(5, n, p=shares)
    _, counts = impression_batch(7, np.arange(n, dtype=np.int64), np.full(n, finger),
                                 np.zeros(n, np.int64), np.full(n, capture_index(capture)),
                                 q.astype(np.int64), noise)
    e = expected_minutiae(finger, capture_index(capture), shares, noise)
    assert 1.0 <= e / counts.mean() <= 1.12, (e, counts.mean())


def test_worse_quality_loses_true_minutiae():
    good = np.mean([len(minutiae(5, i, 7, 1, "rolled", 1)) for i in range(200)])
    bad = np.mean([len(minutiae(5, i, 7, 1, "rolled", 5)) for i in range(200)])
    assert bad < good


def _numpy_histogram(m):
    # plain-numpy reference of fpscale.synth.features.pair_histogram (exact atan2):
    # each unordered pair once, in the orientation with the smaller first angle
    h = np.zeros(N_BINS)
    n = len(m)
    tau = 2 * np.pi
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = m[j, 0] - m[i, 0], m[j, 1] - m[i, 1]
            d = math.hypot(dx, dy)
            if d >= R_MAX or d == 0:
                continue
            phi = math.atan2(dy, dx)
            a = ((m[i, 2] - phi) % tau, (m[j, 2] - phi) % tau)
            b = ((m[j, 2] - phi - np.pi) % tau, (m[i, 2] - phi - np.pi) % tau)
            a1, a2 = min(a, b)
            fd = max(d / R_MAX * N_DIST - 0.5, 0.0)
            d0 = int(fd)
            d1 = min(d0 + 1, N_DIST - 1)
            wd = fd - d0
            f1 = a1 / tau * N_ANGLE - 0.5
            f2 = a2 / tau * N_ANGLE - 0.5
            i0, j0 = math.floor(f1), math.floor(f2)
            w1, w2 = f1 - i0, f2 - j0
            for a_, wa in ((d0, 1 - wd), (d1, wd)):
                for b_, wb in ((i0, 1 - w1), (i0 + 1, w1)):
                    for c_, wc in ((j0, 1 - w2), (j0 + 1, w2)):
                        h[(a_ * N_ANGLE + b_ % N_ANGLE) * N_ANGLE + c_ % N_ANGLE] += wa * wb * wc
    return h


def test_spatial_histogram_matches_numpy_reference():
    m, ref = minutiae(9, 5, 2, 1, "rolled", 2, with_reference=True)
    ref[3] = 1.0
    h = np.empty(N_SPATIAL)
    spatial_histogram(m, len(m), ref, h)
    c, s = np.cos(ref[2]), np.sin(ref[2])
    u = c * (m[:, 0] - ref[0]) + s * (m[:, 1] - ref[1])
    v = -s * (m[:, 0] - ref[0]) + c * (m[:, 1] - ref[1])
    r = np.hypot(u, v)
    keep = r < R_SPATIAL
    assert h.sum() == pytest.approx(keep.sum())
    # the mass of each ring equals the minutiae there (ring weights split linearly)
    fr = r[keep] / R_SPATIAL * N_RING - 0.5
    ring_mass = np.zeros(N_RING)
    for f in fr:
        if f < 0:
            ring_mass[0] += 1
        else:
            r0 = int(f)
            r1 = min(r0 + 1, N_RING - 1)
            ring_mass[r0] += 1 - (f - r0)
            ring_mass[r1] += f - r0
    assert np.allclose(h.reshape(N_RING, -1).sum(1), ring_mass)
    ref[3] = 0.0
    spatial_histogram(m, len(m), ref, h)
    assert h.sum() == 0


def test_pair_histogram_matches_numpy_reference():
    m = minutiae(9, 4, 3, 1, "plain", 2)
    h = np.empty(N_BINS)
    pair_histogram(m, len(m), h, *pair_scratch(len(m)))
    ref = _numpy_histogram(m)
    assert h.sum() == pytest.approx(ref.sum())
    # the kernel's atan2 is within 2e-6 rad of the exact one (and could flip
    # the orientation of a pair whose two readings are that close)
    assert np.abs(h - ref).sum() / ref.sum() < 1e-4


@njit(cache=True)
def _listed_pairs(buf, n, stop, r2):
    # the pairs (i < n, i < j < stop) as pair_histogram lists them, eight
    # candidates at a time
    k = 0
    for i in range(n):
        for j0 in range(i + 1, stop, 8):
            k = features._near_pairs(buf, j0, stop, (buf[4, i], buf[5, i], buf[6, i]), r2, k)
    return k


@pytest.mark.parametrize("n,stop", [(1, 1), (2, 2), (9, 9), (16, 16), (17, 17), (61, 61),
                                    (17, 12), (61, 30)])
def test_pair_listing_is_the_scalar_listing_bit_for_bit(n, stop):
    # the block-wise compaction keeps the pairs within R_MAX, in order, with the
    # differences the scalar code computes: checked against numpy, with
    # pairs planted at distance 0 and exactly at R_MAX (both skipped), and
    # finite minutiae past stop that the search must not read as candidates
    rng = np.random.default_rng(n + stop)
    width = max(n * (n - 1) // 2, n) + 8
    xyt = np.column_stack([rng.uniform(-9, 9, width), rng.uniform(-9, 9, width),
                           rng.uniform(0, 6.2, width)])
    if n > 4:
        xyt[3, :2] = xyt[1, :2]
        xyt[2, :2] = (1.0, 2.0)
        xyt[4, :2] = (1.0 + R_MAX, 2.0)
        assert (xyt[4, 0] - xyt[2, 0]) ** 2 == R_MAX * R_MAX
    xyt[stop:, :2] = xyt[0, :2] + 0.5  # near every early minutia: listed if read
    buf = np.full((7, width), np.nan)
    buf[4:7] = xyt.T
    k = _listed_pairs(buf, n, stop, R_MAX * R_MAX)
    assert np.array_equal(buf[4:7], xyt.T)
    i, j = np.triu_indices(stop, 1)  # row by row: the order the kernel lists pairs in
    dx = xyt[j, 0] - xyt[i, 0]
    dy = xyt[j, 1] - xyt[i, 1]
    dd = dx * dx + dy * dy
    keep = (dd < R_MAX * R_MAX) & (dd != 0.0)
    assert k == keep.sum()
    want = np.stack([dx[keep], dy[keep], xyt[i[keep], 2], xyt[j[keep], 2]])
    assert np.array_equal(buf[:4, :k].view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("layout", ["tall", "flat", "repeated", "tiny"])
def test_pair_histogram_bands_match_numpy_reference(layout):
    # the band ordering must not lose or double a pair on any layout: a set
    # taller than the scratch has bands for (wider bands), all minutiae on
    # one line of y (one band), repeated points (distance 0 is skipped)
    rng = np.random.default_rng(5)
    n = {"tall": 120, "flat": 60, "repeated": 40, "tiny": 2}[layout]
    m = np.column_stack([rng.uniform(-8, 8, n), rng.uniform(-12, 12, n),
                         rng.uniform(0, 2 * np.pi, n), rng.integers(0, 2, n)])
    if layout == "tall":
        m[:, 1] *= 2000.0
        m[::2, 1] = m[1::2, 1] + rng.uniform(-3, 3, n // 2)
    elif layout == "flat":
        m[:, 1] = 3.0
    elif layout == "repeated":
        m[n // 2:] = m[: n // 2]
    elif layout == "tiny":
        m[1, :2] = m[0, :2] + 1.0
    h = np.empty(N_BINS)
    pair_histogram(m, n, h, *pair_scratch(n))
    ref = _numpy_histogram(m)
    assert ref.sum() > 0
    assert h.sum() == pytest.approx(ref.sum())
    assert np.abs(h - ref).sum() / ref.sum() < 1e-4


@given(st.integers(0, 10_000), st.floats(-np.pi, np.pi), st.floats(-50, 50), st.floats(-50, 50))
def test_vector_invariant_to_rotation_and_translation(identity, angle, tx, ty):
    m, ref = minutiae(2, identity, 1 + identity % 10, 1, "plain", 2, with_reference=True)
    v0, b0 = encode_set(m, ref)
    moved_ref = ref.copy()
    moved_ref[:3] = rigid(ref[None, :], angle, tx, ty)[0, :3]
    v1, b1 = encode_set(rigid(m, angle, tx, ty), moved_ref)
    assert float(v0 @ v1) > 0.999
    assert np.unpackbits(b0 ^ b1).sum() <= 4


@given(st.integers(1, 500), st.integers(0, 10))
def test_rechunking_does_not_change_a_byte(chunk, seed):
    spec = PopulationSpec(seed=seed, gallery_size=600, n_submissions=300, mated_share=0.3)
    whole = gallery_chunk(spec, 0, 600)
    parts = [gallery_chunk(spec, a, b) for a, b in chunks(600, chunk)]
    assert np.vstack([p.vectors for p in parts]).tobytes() == whole.vectors.tobytes()
    assert np.vstack([p.codes for p in parts]).tobytes() == whole.codes.tobytes()
    # a codes-only run leaves the vectors out and gets the same codes
    bare = [gallery_chunk(spec, a, b, vectors=False) for a, b in chunks(600, chunk)]
    assert np.vstack([p.codes for p in bare]).tobytes() == whole.codes.tobytes()
    assert all(p.vectors.shape == (p.stop - p.start, 0) for p in bare)
    sub = submission_chunk(spec, 0, 300)
    sparts = [submission_chunk(spec, a, b) for a, b in reversed(list(chunks(300, chunk)))]
    assert np.vstack([p.vectors for p in reversed(sparts)]).tobytes() == sub.vectors.tobytes()


def test_same_bytes_with_one_or_two_threads():
    import numba
    spec = PopulationSpec(seed=4, gallery_size=400)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = gallery_chunk(spec, 0, 400)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = gallery_chunk(spec, 0, 400)
    finally:
        numba.set_num_threads(old)
    assert one.vectors.tobytes() == two.vectors.tobytes()


# Documented margin (README, docs/encoding.md): for plain quality-2
# impressions of one finger, genuine cosine beats impostor cosine by at least
# 0.3 on average and d' is at least 2.5.
def test_genuine_beats_impostor_by_documented_margin():
    n = 1500
    ids = np.arange(n)
    a, _, _ = encode(8, ids, 2, 1, 1, 2)
    b, _, _ = encode(8, ids, 2, 2, 1, 2)
    gen = (a * b).sum(1)
    imp = (a[:-1] * b[1:]).sum(1)
    assert gen.mean() - imp.mean() >= 0.3
    assert (gen.mean() - imp.mean()) / np.sqrt((gen.var() + imp.var()) / 2) >= 2.5


def test_binary_codes_track_float_similarity():
    ids = np.arange(800)
    va, ca, _ = encode(8, ids, 7, 1, 1, 2, dim=64, bits=256)
    vb, cb, _ = encode(8, ids, 7, 2, 1, 2, dim=64, bits=256)
    ham = np.unpackbits(ca ^ cb, axis=1).sum(1)
    gen_ham = ham.mean()
    imp = np.unpackbits(ca[:-1] ^ cb[1:], axis=1).sum(1).mean()
    assert gen_ham < imp - 20
    assert abs(imp - 128) < 8  # unrelated fingers: about half the bits differ


def test_submission_truth_is_separate_and_consistent():
    spec = PopulationSpec(seed=3, gallery_size=1000, n_submissions=20000, mated_share=0.063)
    ident, mate = submission_truth(spec, 0, 20000)
    mated = mate >= 0
    assert abs(mated.mean() - 0.063) < 0.006
    assert np.all(ident[mated] == mate[mated]) and np.all(mate[mated] < 1000)
    assert np.all(ident[~mated] >= NON_ENROLLED_BASE)


def test_unmatchable_bookings_show_another_persons_fingers():
    from fpscale.synth.population import UNMATCHABLE_BASE, unmatchable_bookings
    base = PopulationSpec(seed=3, gallery_size=1000, n_submissions=20000, mated_share=0.5)
    spec = dataclasses.replace(base, unmatchable_share=0.1)
    ident0, mate0 = submission_truth(base, 0, 20000)
    ident, mate = submission_truth(spec, 0, 20000)
    flagged = unmatchable_bookings(spec, 0, 20000)
    # the truth is the same; only the flagged bookings' fingers change
    np.testing.assert_array_equal(mate, mate0)
    np.testing.assert_array_equal(ident[~flagged], ident0[~flagged])
    assert np.all(ident[flagged] >= UNMATCHABLE_BASE) and np.all(mate[flagged] >= 0)
    assert not unmatchable_bookings(base, 0, 20000).any()
    # a binomial share of the mated bookings (99.9% two-sided acceptance)
    n = int((mate >= 0).sum())
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n, 0.1)
    assert lo <= flagged.sum() <= hi
    # a chunk sees what the whole stream sees; another person's fingers
    np.testing.assert_array_equal(unmatchable_bookings(spec, 500, 900), flagged[500:900])
    s = int(np.flatnonzero(flagged)[0])
    imp = submission_impressions(spec, s, s + 1)
    assert np.all(imp.identity == UNMATCHABLE_BASE + s)


def test_legacy_records_have_only_index_fingers():
    spec = PopulationSpec(seed=3, gallery_size=2000, legacy_share=0.4,
                          search_fingers=(1, 2, 7))
    legacy = legacy_records(spec, np.arange(2000))
    assert abs(legacy.mean() - 0.4) < 0.04
    g = gallery_chunk(spec, 0, 2000)
    thumb = g.vectors[:, :spec.dim]
    assert np.all(thumb[legacy] == 0) and np.all(np.linalg.norm(thumb[~legacy], axis=1) > 0.99)


@pytest.mark.parametrize("key,value,needle", [
    ("gallery_size", -5, "population.gallery_size"),
    ("mated_share", 1.5, "population.mated_share"),
    ("legacy_share", -0.1, "population.legacy_share"),
    ("booking_capture", "photo", "population.booking_capture"),
    ("search_fingers", [0, 2], "population.search_fingers"),
    ("bits", 100, "multiple of 64"),
    ("fusion", "median", "population.fusion"),
    ("gallery_quality", [1, 0, 0], "population.gallery_quality"),
    ("capture_noise", -0.5, "population.capture_noise"),
    ("capture_noise", True, "population.capture_noise"),
    ("unmatchable_share", 1.0, "population.unmatchable_share"),
    ("unmatchable_share", -0.01, "population.unmatchable_share"),
    ("quality_weighting", 1, "population.quality_weighting"),
    ("quality_weighting", "yes", "population.quality_weighting"),
    ("colour", 3, "unknown key 'colour'"),
])
def test_bad_values_name_the_field(key, value, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        spec_from_dict({key: value})


def test_capture_types_named_in_error():
    with pytest.raises(ValueError, match="rolled, plain, legacy_flat, partial"):
        minutiae(1, 1, 1, 1, "photo")
    assert [capture_index(c) for c in CAPTURE_TYPES] == list(range(len(CAPTURE_TYPES)))


def test_znorm_fusion_gives_mixed_records_the_same_impostor_spread():
    spec = PopulationSpec(seed=2, gallery_size=3000, legacy_share=0.5, n_submissions=400,
                          mated_share=0.0, search_fingers=tuple(range(1, 11)), fusion="znorm")
    g = gallery_chunk(spec, 0, 3000)
    p = submission_chunk(spec, 0, 400)
    legacy = legacy_records(spec, np.arange(3000))
    s = p.vectors @ g.vectors.T  # all impostor pairs
    sd_legacy, sd_ten = s[:, legacy].std(), s[:, ~legacy].std()
    assert abs(sd_legacy / sd_ten - 1) < 0.15
    plain = PopulationSpec(**{**spec.__dict__, "fusion": "sum"})
    s2 = submission_chunk(plain, 0, 400).vectors @ gallery_chunk(plain, 0, 3000).vectors.T
    assert s2[:, ~legacy].std() / s2[:, legacy].std() > 1.8  # sum: sqrt(5) wider for ten-prints


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # distance (mm) from each minutia of a to the nearest of b
    return np.sqrt(((a[:, None, :2] - b[None, :, :2]) ** 2).sum(2)).min(1)


def test_capture_noise_zero_places_every_capture_alike():
    # at capture noise 0 two captures of a finger differ only by extraction
    # errors (here a tenth of quality 1's): nearly every minutia of one lies
    # on one of the other; at 1 the placement moves them by millimetres
    near = {0.0: [], 1.0: []}
    for cn in near:
        for i in range(40):
            a = minutiae(3, i, 2, 0, "plain", 1, noise=0.1, capture_noise=cn)
            b = minutiae(3, i, 2, 1, "plain", 1, noise=0.1, capture_noise=cn)
            near[cn].append(np.mean(_nearest(a, b) < 0.05))
    assert np.median(near[0.0]) > 0.85
    assert np.median(near[1.0]) < 0.2


def test_capture_noise_scales_the_placement_spread():
    # the reference point's position on the sensor moves between captures by
    # the window's translation and rotation: halving capture noise halves it
    def spread(cn):
        d = []
        for i in range(1500):
            _, ra = minutiae(4, i, 7, 0, "plain", 2, with_reference=True, capture_noise=cn)
            _, rb = minutiae(4, i, 7, 1, "plain", 2, with_reference=True, capture_noise=cn)
            d.append(math.hypot(ra[0] - rb[0], ra[1] - rb[1]))
        return np.mean(d)
    r = spread(0.5) / spread(1.0)
    assert 0.4 < r < 0.6


@pytest.mark.parametrize("capture_noise", [0.0, 0.5, 1.0])
def test_capture_windows_are_the_windows_the_impressions_keep(capture_noise):
    # without extraction errors a capture holds exactly the master minutiae
    # inside its window; at capture noise 0 it holds them unmoved as well
    master, ref = np.empty((MAX_MASTER, 4)), np.empty(3)
    for i in range(60):
        finger, enc, cap = 1 + i % 10, i % 3, i % len(CAPTURE_TYPES)
        (w,) = capture_windows(9, np.array([i]), np.array([finger]), np.array([enc]),
                               np.array([cap]), capture_noise)
        k, _ = master_finger(9, i, finger, master, ref)
        held = master[:k][((master[:k, 0] - w[0]) / w[2]) ** 2
                          + ((master[:k, 1] - w[1]) / w[3]) ** 2 <= 1.0]
        m = minutiae(9, i, finger, enc, cap, 3, noise=0.0, capture_noise=capture_noise)
        assert len(m) == len(held) > 0
        if capture_noise == 0.0:
            assert np.allclose(m[:, :2], held[:, :2]) and np.allclose(m[:, 3], held[:, 3])


def test_capture_overlap_is_what_the_capture_noise_sets():
    from fpscale.bench.tools.population_facts import capture_overlap
    spec = PopulationSpec(seed=5, gallery_size=1000, gallery_capture="plain", booking_capture="plain",
                          legacy_share=0.0)
    at = {cn: capture_overlap(dataclasses.replace(spec, capture_noise=cn), n=400) for cn in (0.0, 0.5, 1.0)}
    assert at[0.0]["mean"] == at[0.0]["p5"] == 1.0  # the same window every time
    assert 1.0 > at[0.5]["mean"] > at[1.0]["mean"] > 0.5
    assert at[1.0]["booking"] == "plain" and at[1.0]["enrolment"] == ["plain"]
    # a rolled enrolment holds nearly all of what a plain booking holds
    rolled = capture_overlap(dataclasses.replace(spec, gallery_capture="rolled"), n=400)
    assert rolled["enrolment"] == ["rolled"] and rolled["p50"] == 1.0 > at[1.0]["p50"]


def test_capture_noise_floor_is_where_the_median_share_meets_the_cited_one():
    from fpscale.bench.tools.population_facts import CITED_SHARE, capture_noise_floor, capture_overlap
    spec = PopulationSpec(seed=5, gallery_size=1000, gallery_capture="plain", booking_capture="plain",
                          legacy_share=0.0)
    floor = capture_noise_floor(spec, n=400)
    assert 0.0 < floor < 1.0

    def median(cn):
        return capture_overlap(dataclasses.replace(spec, capture_noise=cn), n=400)["p50"]
    assert median(floor) < CITED_SHARE <= median(floor - 2.0 ** -12)
    assert capture_noise_floor(dataclasses.replace(spec, gallery_capture="rolled"), n=400) is None


def test_capture_noise_at_its_default_is_left_out_of_the_scenario_record():
    from fpscale.bench.scenario import load_scenario
    base = load_scenario("scenarios/default.toml", ["calibration.profile=none"])
    half = load_scenario("scenarios/default.toml", ["calibration.profile=none", "population.capture_noise=0.5"])
    assert "capture_noise" not in base.to_dict()["population"]
    assert half.to_dict()["population"]["capture_noise"] == 0.5
    assert half.fingerprint() != base.fingerprint()


def test_an_unmatchable_booking_has_no_placement_to_measure():
    from fpscale.bench.tools.population_facts import search_overlap
    from fpscale.synth.population import unmatchable_bookings
    spec = PopulationSpec(seed=5, gallery_size=1000, n_submissions=300, mated_share=0.5,
                          gallery_capture="plain", booking_capture="plain", legacy_share=0.0,
                          unmatchable_share=0.3)
    flagged = unmatchable_bookings(spec, 0, 300)
    _, mate = submission_truth(spec, 0, 300)
    share = search_overlap(spec, 300)
    assert flagged.sum() > 20
    assert np.all(np.isnan(share[flagged])) and np.all(np.isnan(share[mate < 0]))
    matchable = (mate >= 0) & ~flagged
    assert np.all((share[matchable] > 0) & (share[matchable] <= 1))
    # the scenario record leaves the share out at its default, as the capture noise
    from fpscale.bench.scenario import load_scenario
    base = load_scenario("scenarios/default.toml", ["calibration.profile=none"])
    some = load_scenario("scenarios/default.toml", ["calibration.profile=none",
                                                    "population.unmatchable_share=0.01"])
    assert "unmatchable_share" not in base.to_dict()["population"]
    assert some.fingerprint() != base.fingerprint()
