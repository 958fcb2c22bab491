import math

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from fpscale.matcher import mcc
from fpscale.matcher.minutiae import match_many as old_match_many
from fpscale.synth.impressions import PLAIN, ROLLED, impression_batch, minutiae

from rigid_motion import rigid

# --- plain-numpy reference of the cylinders and the local similarity ---------


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _hull_distance(p, hull_xy):
    # distance of points p (k, 2) to a convex polygon (0 inside)
    h = len(hull_xy)
    a = hull_xy
    b = np.roll(hull_xy, -1, axis=0)
    e = b - a
    rel = p[:, None, :] - a[None, :, :]
    cross = e[None, :, 0] * rel[..., 1] - e[None, :, 1] * rel[..., 0]
    inside = np.all(cross >= 0, axis=1) if h >= 3 else np.zeros(len(p), bool)
    ll = np.maximum((e ** 2).sum(1), 1e-300)
    u = np.clip((rel * e[None]).sum(-1) / ll[None], 0, 1)
    d = np.linalg.norm(rel - u[..., None] * e[None], axis=-1).min(axis=1)
    return np.where(inside, 0.0, d)


def reference_cylinders(m):
    """Values (n, ND, NS, NS), cell validity, cylinder validity, written
    out from the paper's definitions with exact erf."""
    n = len(m)
    xy = m[:, :2]
    hull = xy[ConvexHull(xy).vertices]  # counter-clockwise in 2-D
    sig_d = mcc.SIGMA_D * math.sqrt(2)
    erf = np.vectorize(math.erf)
    idx = np.arange(mcc.NS) - (mcc.NS - 1) / 2
    oa, ob = np.meshgrid(idx * mcc.DELTA_S, idx * mcc.DELTA_S, indexing="ij")
    in_disc = oa ** 2 + ob ** 2 <= mcc.R ** 2
    vals = np.zeros((n, mcc.ND, mcc.NS, mcc.NS))
    cells = np.zeros((n, mcc.NS, mcc.NS), bool)
    ok = np.zeros(n, bool)
    phi = -np.pi + (np.arange(mcc.ND) + 0.5) * mcc.DELTA_D
    for i in range(n):
        c, s = math.cos(m[i, 2]), math.sin(m[i, 2])
        px = m[i, 0] + c * oa - s * ob
        py = m[i, 1] + s * oa + c * ob
        for t in range(n):
            if t == i:
                continue
            d2 = (px - m[t, 0]) ** 2 + (py - m[t, 1]) ** 2
            near = d2 <= (3 * mcc.SIGMA_S) ** 2
            gs = np.exp(-d2 / (2 * mcc.SIGMA_S ** 2)) / (mcc.SIGMA_S_PX * math.sqrt(2 * math.pi))
            beta = _wrap(phi - _wrap(m[t, 2] - m[i, 2]))
            cd = 0.5 * (erf((beta + mcc.DELTA_D / 2) / sig_d) - erf((beta - mcc.DELTA_D / 2) / sig_d))
            vals[i] += np.where(near, gs, 0.0)[None] * cd[:, None, None]
        dist = _hull_distance(np.stack([px.ravel(), py.ravel()], 1), hull).reshape(px.shape)
        cells[i] = in_disc & (dist <= mcc.OMEGA)
        close = np.hypot(*(xy - xy[i]).T) <= mcc.R + 3 * mcc.SIGMA_S
        ok[i] = cells[i].sum() >= mcc.MIN_VC * in_disc.sum() and close.sum() - 1 >= mcc.MIN_M
    return vals, cells, ok, in_disc


def reference_similarity(bits_a, cells_a, ta, bits_b, cells_b, tb, in_disc):
    """The paper's bit-based local similarity of two cylinders (bits
    (ND, NS, NS) bool, cells (NS, NS) bool)."""
    if abs(_wrap(ta - tb)) > mcc.DELTA_THETA:
        return 0.0
    both = cells_a & cells_b
    if both.sum() < mcc.MIN_ME * in_disc.sum():
        return 0.0
    a = bits_a & both[None]
    b = bits_b & both[None]
    na, nb = math.sqrt(a.sum()), math.sqrt(b.sum())
    if na + nb == 0:
        return 0.0
    return 1.0 - math.sqrt((a ^ b).sum()) / (na + nb)


def _random_template(rng, n, size=9.0):
    m = np.zeros((n, 4))
    m[:, :2] = rng.uniform(0, size, (n, 2))
    m[:, 2] = rng.uniform(0, 2 * np.pi, n)
    return m


@pytest.fixture(scope="module")
def small_pair():
    rng = np.random.default_rng(7)
    a = _random_template(rng, 22)
    # b: a moved a little, with some minutiae dropped and some added
    b = rigid(a[:17], 0.2, 0.5, -0.3)
    b[:, :2] += rng.normal(0, 0.05, (17, 2))
    b = np.vstack([b, _random_template(rng, 4)])
    return a, b


def test_cylinder_values_match_the_reference(small_pair):
    for m in small_pair:
        vals, cells, ok = mcc.cylinder_values(m, len(m))
        rv, rc, rok, disc = reference_cylinders(m)
        assert np.array_equal(cells, rc)
        assert np.array_equal(ok, rok)
        assert 0 < cells.sum() < len(m) * disc.sum()  # some cells invalid: the hull matters
        d = np.abs(vals - rv)[:, :, disc]
        assert d.max() <= 1e-6 * max(rv.max(), 1e-12)
        assert rv.max() > mcc.MU_PSI  # the threshold is met somewhere


def _bits_from_prepared(p, t, k):
    # prepared cylinder k of template t as (ND, NS, NS) bits and (NS, NS) cells
    bits, mask, pts, cnt, counts, full = p
    words = bits[t][k]
    flat = np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little").astype(bool)
    cells = np.unpackbits(mask[t][k].astype("<u8").view(np.uint8), bitorder="little").astype(bool)
    return flat.reshape(mcc.ND, mcc.NS, mcc.NS), cells.reshape(mcc.NS, mcc.NS)


def test_bits_and_local_similarity_match_the_reference(small_pair):
    a, b = small_pair
    t = np.zeros((2, 32, 4))
    t[0, :len(a)] = a
    t[1, :len(b)] = b
    n = np.array([len(a), len(b)])
    p = mcc.prepare(t, n)
    bits, mask, pts, cnt, counts, full = p
    refs = []
    for q, m in enumerate((a, b)):
        rv, rc, rok, disc = reference_cylinders(m)
        assert np.min(np.abs(rv[:, :, disc] - mcc.MU_PSI)) > 1e-9  # no value on the threshold
        assert counts[q] == rok.sum()
        rows = []
        for k in range(counts[q]):
            i = int(np.flatnonzero((m[:, 0] == pts[q, k, 0]) & (m[:, 1] == pts[q, k, 1]))[0])
            got_bits, got_cells = _bits_from_prepared(p, q, k)
            assert np.array_equal(got_cells, rc[i])
            assert np.array_equal(got_bits, (rv[i] >= mcc.MU_PSI) & rc[i][None])
            assert cnt[q, 0, k] == got_bits.sum() and cnt[q, 1, k] == rc[i].sum()
            assert (k < full[q]) == (rc[i].sum() == disc.sum())
            rows.append((got_bits, got_cells, m[i, 2]))
        refs.append(rows)
    assert 0 < full[0] < counts[0]  # both kinds of cylinder are exercised
    lam = np.zeros((counts[0], counts[1]))
    for i, (ba, ca, ta) in enumerate(refs[0]):
        for j, (bb, cb, tb) in enumerate(refs[1]):
            lam[i, j] = reference_similarity(ba, ca, ta, bb, cb, tb, disc)
            one = mcc.local_similarity(bits[0][i], mask[0][i], ta, bits[1][j], mask[1][j], tb)
            assert one == pytest.approx(lam[i, j], abs=1e-12)
    # the batch kernel (one row of a against all of b at once)
    nb = counts[1]
    row = np.empty(nb)
    b = (bits[1], mask[1], pts[1], cnt[1])
    for i in range(counts[0]):
        mcc._similarity_row(bits[0], mask[0], pts[0], cnt[0], i, full[0], b, nb, full[1],
                            math.cos(mcc.DELTA_THETA), row)
        assert np.allclose(row, lam[i], atol=1e-12)
        assert np.array_equal(row == 0.0, lam[i] == 0.0)  # the direction test skips only zeros
    assert (lam > 0.5).sum() >= 10  # the moved copy is recognised


def _templates(seed, n, capture, encounter, quality, finger=2, base=0):
    ids = np.arange(base, base + n)
    return impression_batch(seed, ids, np.full(n, finger), np.full(n, encounter),
                            np.full(n, capture), np.full(n, quality), 1.0)


def test_rigid_invariance():
    rng = np.random.default_rng(3)
    for i in range(6):
        a = minutiae(2, i, 7, 0, "rolled", 2)
        b = minutiae(2, i, 7, 1, "plain", 2)
        angle, tx, ty = rng.uniform(-np.pi, np.pi), rng.uniform(-30, 30), rng.uniform(-30, 30)
        # with any pair of directions matchable, exact for any rigid motion
        s0 = mcc.match(a, len(a), b, len(b), np.pi)
        assert mcc.match(rigid(a, angle, tx, ty), len(a), b, len(b), np.pi) == pytest.approx(s0, rel=1e-9)
        assert mcc.match(a, len(a), rigid(b, -angle, ty, tx), len(b), np.pi) == pytest.approx(s0, rel=1e-9)
        # with the published delta_theta (pi / 2, captures are upright):
        # exact for translations, close for small rotations
        s0 = mcc.match(a, len(a), b, len(b))
        assert mcc.match(rigid(a, 0.0, tx, ty), len(a), b, len(b)) == pytest.approx(s0, rel=1e-9)
        small = rng.uniform(-0.3, 0.3)
        assert mcc.match(rigid(a, small, tx, ty), len(a), b, len(b)) == pytest.approx(s0, rel=0.1)


def test_symmetric():
    ta, na = _templates(1, 30, ROLLED, 0, 2)
    tb, nb = _templates(1, 30, PLAIN, 1, 3)
    ia = np.repeat(np.arange(30), 3)
    ib = (ia + np.tile([0, 1, 7], 30)) % 30
    ab = mcc.match_many(ta, na, tb, nb, ia, ib)
    ba = mcc.match_many(tb, nb, ta, na, ib, ia)
    assert np.array_equal(ab, ba)
    # equal counts: the canonical order falls to the cylinders' popcounts
    tc, nc = _templates(1, 30, PLAIN, 2, 3)
    nc[:] = nb[:] = np.minimum(nb, nc)
    assert np.array_equal(mcc.match_many(tb, nb, tc, nc, ia, ib), mcc.match_many(tc, nc, tb, nb, ib, ia))


def test_self_match_scores_about_one():
    a = minutiae(3, 9, 3, 0, "plain", 1)
    assert mcc.match(a, len(a), a, len(a)) > 0.99


def test_genuine_beat_impostors_and_the_old_matcher():
    # plain (quality 2) searched against rolled (quality 2), finger 2
    n = 150
    gt, gn = _templates(5, n, ROLLED, 0, 2)
    pt, pn = _templates(5, n, PLAIN, 1, 2)
    ids = np.arange(n)
    ia = np.repeat(ids, 20)
    ib = (ia + 1 + np.tile(np.arange(20), n) * 7) % n
    gen = mcc.match_many(pt, pn, gt, gn, ids, ids)
    imp = mcc.match_many(pt, pn, gt, gn, ia, ib)
    assert np.all((gen >= 0) & (gen <= 1)) and np.all((imp >= 0) & (imp <= 1))
    assert np.median(gen) >= 3 * np.median(imp)
    # nearly every genuine pair above every one of 3,000 impostor pairs
    assert np.mean(gen > imp.max()) >= 0.97
    # and far better than the paired count at the same operating point
    og = old_match_many(pt, pn, gt, gn, ids, ids)
    oi = old_match_many(pt, pn, gt, gn, ia, ib)
    assert np.mean(gen > imp.max()) >= np.mean(og > oi.max()) + 0.1


def test_edge_cases_and_padding():
    rng = np.random.default_rng(11)
    t = np.zeros((6, 64, 4))
    n = np.array([0, 1, 2, 3, 40, 40])
    for k in range(1, 4):
        t[k, :n[k]] = _random_template(rng, n[k], size=3.0)
    full = minutiae(4, 1, 2, 0, "plain", 2)[:40]
    t[4, :40] = full
    t[5, :40] = full
    t[5, 40:] = rng.uniform(-50, 50, (24, 4))  # junk past the count is ignored
    ia, ib = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    s = mcc.match_many(t, n, t, n, ia.ravel(), ib.ravel()).reshape(6, 6)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(s[:3] == 0) and np.all(s[:, :3] == 0)  # no valid cylinder below 3 minutiae
    assert s[4, 5] == s[4, 4] == s[5, 5] > 0.99
    # single calls agree with the batch; an empty batch is fine
    assert mcc.match(full, 40, t[5], 40) == s[4, 5]
    assert mcc.match_many(t, n, t, n, np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
    # templates no pair refers to are not prepared, and do not change anything
    assert mcc.match_many(t, n, t, n, np.array([4]), np.array([5]))[0] == s[4, 5]


def test_n_pairs_follows_the_sigmoid():
    assert mcc.n_pairs(0, 50) == mcc.MIN_NP
    assert mcc.n_pairs(80, 100) == mcc.MAX_NP
    assert mcc.n_pairs(20, 30) == mcc.MIN_NP + round((mcc.MAX_NP - mcc.MIN_NP) / 2)


def test_rescoring_with_mcc_ranks_mates_first():
    # a second stage built on MCC: lists holding the mate among nine other
    # records; MCC must put the mate first at least as often as the paired count
    from fpscale.bench.run.rescore_segment import rescore_segment
    from fpscale.bench.scenario import Rescoring
    from fpscale.synth.population import PopulationSpec, submission_truth

    spec = PopulationSpec(seed=4, gallery_size=3000, n_submissions=400, mated_share=0.5,
                          search_fingers=(2, 7))
    _, mate = submission_truth(spec, 0, spec.n_submissions)
    q = np.flatnonzero(mate >= 0)[:40]
    rng = np.random.default_rng(0)
    others = rng.integers(0, spec.gallery_size, size=(len(q), 9))
    others = np.where(others == mate[q, None], (others + 1) % spec.gallery_size, others)
    ids = np.full((spec.n_submissions, 10), -1, dtype=np.int64)
    ids[q] = np.column_stack([others[:, :4], mate[q], others[:, 4:]])
    firsts = {}
    for matcher in ("paired", "mcc"):
        hits = 0
        for s in q:  # one search at a time: each is a segment of its own
            ri, rs, info = rescore_segment(spec, ids[s:s + 1], Rescoring(10, "sum", matcher), offset=s)
            hits += int(ri[0, 0] == mate[s])
            assert np.all(np.diff(rs[0]) <= 0) and info["comparisons"] > 0
        firsts[matcher] = hits / len(q)
    assert firsts["mcc"] >= 0.9 and firsts["mcc"] >= firsts["paired"], firsts
