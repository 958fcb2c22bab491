import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fpscale.matcher.minutiae import A_TOL, R_TOL, _pair, match, match_many, normalised
from fpscale.synth.impressions import minutiae

from rigid_motion import rigid


def _numpy_pair_count(a, b, rot, tx, ty, r_tol, a_tol):
    # plain-numpy reference of the closest-first pairing under an alignment
    c, s = np.cos(rot), np.sin(rot)
    x = c * a[:, 0] - s * a[:, 1] + tx
    y = s * a[:, 0] + c * a[:, 1] + ty
    t = (a[:, 2] + rot) % (2 * np.pi)
    d2 = (b[None, :, 0] - x[:, None]) ** 2 + (b[None, :, 1] - y[:, None]) ** 2
    da = np.abs(b[None, :, 2] - t[:, None])
    da = np.minimum(da, 2 * np.pi - da)
    ii, jj = np.nonzero((d2 <= r_tol ** 2) & (da <= a_tol))
    used_a, used_b, count = set(), set(), 0
    for k in np.argsort(d2[ii, jj], kind="stable"):
        if ii[k] in used_a or jj[k] in used_b:
            continue
        used_a.add(ii[k])
        used_b.add(jj[k])
        count += 1
    return count


def test_pairing_matches_numpy_reference():
    for i in range(30):
        a = minutiae(4, i, 2, 0, "rolled", 2)
        b = minutiae(4, i, 2, 1, "plain", 2)
        b = b[np.argsort(b[:, 0], kind="mergesort")]
        rot, tx, ty = 0.1 * (i % 5), 0.5 * (i % 3), -0.3 * (i % 4)
        pa = np.empty(len(a), np.int64)
        pb = np.empty(len(a), np.int64)
        used = np.empty(len(b), np.bool_)
        used_a = np.empty(len(a), np.bool_)
        cap = 8 * (len(a) + len(b))
        k = _pair(a, len(a), b, len(b), rot, tx, ty, R_TOL, A_TOL, pa, pb, used, used_a,
                  np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap))
        assert k == _numpy_pair_count(a, b, rot, tx, ty, R_TOL, A_TOL)


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_match_is_symmetric(i, j):
    a = minutiae(1, i, 2, 0, "rolled", 2)
    b = minutiae(1, j, 2, 1, "plain", 3)
    assert match(a, len(a), b, len(b)) == match(b, len(b), a, len(a))


@given(st.integers(0, 5000), st.floats(-np.pi, np.pi), st.floats(-30, 30), st.floats(-30, 30))
def test_match_is_rigid_invariant(i, angle, tx, ty):
    a = minutiae(2, i, 7, 0, "rolled", 2)
    b = minutiae(2, i, 7, 1, "plain", 2)
    s0 = match(a, len(a), b, len(b))
    s1 = match(rigid(a, angle, tx, ty), len(a), b, len(b))
    s2 = match(a, len(a), rigid(b, -angle, ty, tx), len(b))
    # alignments come from the minutiae themselves: equal up to float rounding
    assert abs(s1 - s0) <= 1 and abs(s2 - s0) <= 1


def test_self_match_pairs_everything():
    a = minutiae(3, 9, 3, 0, "plain", 1)
    assert match(a, len(a), a, len(a)) == len(a)


def test_genuine_beats_impostor():
    gen, imp = [], []
    for i in range(150):
        a = minutiae(5, i, 2, 0, "rolled", 2)
        b = minutiae(5, i, 2, 1, "plain", 2)
        c = minutiae(5, i + 10_000, 2, 1, "plain", 2)
        gen.append(match(a, len(a), b, len(b)))
        imp.append(match(a, len(a), c, len(c)))
    gen, imp = np.array(gen), np.array(imp)
    assert np.median(gen) >= 2 * np.median(imp)
    assert np.mean(gen > np.percentile(imp, 99)) > 0.8


def test_match_many_equals_single_matches_and_absent_scores_zero():
    t = np.zeros((4, 256, 4))
    n = np.zeros(4, np.int64)
    for k in range(3):
        m = minutiae(6, k, 2, k, "plain", 2)
        t[k, :len(m)] = m
        n[k] = len(m)
    ia = np.array([0, 1, 2, 3, 0])
    ib = np.array([1, 2, 0, 0, 3])
    got = match_many(t, n, t, n, ia, ib)
    want = [match(t[a], n[a], t[b], n[b]) for a, b in zip(ia, ib)]
    assert got.tolist() == want and got[3] == 0 and got[4] == 0
    assert normalised(np.array([5]), np.array([10]), np.array([5]))[0] == 0.5
