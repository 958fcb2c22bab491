import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from fpscale.bench.scenario import MetricsSpec
from fpscale.bench.measure.metrics import (binomial_ci, cmc, det_curve, fnir, fpir, mate_rank, sel,
                           summarize, threshold_for_fpir)

NEG = -np.inf


def _case():
    # 3 mated searches (mates 7, 8, 9) and 2 non-mated, L = 3
    ids = np.array([[7, 1, 2], [1, 8, -1], [1, 2, 3], [4, 5, -1], [6, -1, -1]])
    scores = np.array([[0.9, 0.5, 0.4], [0.8, 0.6, NEG], [0.7, 0.3, 0.2],
                       [0.6, 0.6, NEG], [0.3, NEG, NEG]], dtype=np.float32)
    mate = np.array([7, 8, 9, -1, -1])
    return ids, scores, mate


def test_mate_rank_and_scores():
    ids, scores, mate = _case()
    rank, s = mate_rank(ids, mate, scores)
    assert rank.tolist() == [1, 2, 0, 0, 0]
    assert s[0] == pytest.approx(0.9) and s[1] == pytest.approx(0.6) and np.isneginf(s[2])


def test_fnir_hand_computed_with_ties_and_rank():
    ids, scores, mate = _case()
    rank, s = mate_rank(ids, mate, scores)
    mated = mate >= 0
    # T = 0.6: mate of search 1 scores exactly 0.6, a tie at the threshold counts as a hit
    assert fnir(rank, s, mated, R=2, T=np.float32(0.6)).count == 1  # only search 2 (not listed)
    assert fnir(rank, s, mated, R=1, T=-np.inf).count == 2  # mate beyond rank 1 and unlisted
    assert fnir(rank, s, mated, R=3, T=0.95).value == 1.0


def test_fpir_sel_hand_computed():
    ids, scores, mate = _case()
    nonmated = mate < 0
    assert fpir(scores[:, 0], nonmated, np.float32(0.6)).count == 1   # tie at T counts
    assert fpir(scores[:, 0], nonmated, 0.2).value == 1.0
    assert fpir(scores[:, 0], nonmated, 0.61).count == 0
    assert sel(scores, nonmated, np.float32(0.6)) == 1.0   # two candidates at 0.6, then none
    assert sel(scores, nonmated, 0.25) == 1.5


def test_empty_candidate_lists():
    ids = np.full((3, 4), -1)
    scores = np.full((3, 4), NEG, dtype=np.float32)
    mate = np.array([0, -1, -1])
    s = summarize(ids, scores, mate, MetricsSpec(target_fpir=(0.5,), rank=1))
    assert s.rank1_hit_rate.value == 0.0
    assert s.operating_points[0].fpir.value == 0.0


def test_cmc_is_one_minus_fnir_over_ranks():
    ids, scores, mate = _case()
    rank, s = mate_rank(ids, mate, scores)
    c = cmc(rank, mate >= 0, 3)
    assert c.tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    for r in (1, 2, 3):
        assert c[r - 1] == pytest.approx(1 - fnir(rank, s, mate >= 0, r, -np.inf).value)


def test_threshold_for_fpir_reaches_target_and_says_when_unresolved():
    top = np.linspace(0, 1, 1000)
    nonmated = np.ones(1000, bool)
    t = threshold_for_fpir(top, nonmated, 0.01)
    assert t.resolved and fpir(top, nonmated, t.threshold).value <= 0.01
    assert fpir(top, nonmated, np.nextafter(t.threshold, -1)).value > 0.01 - 1e-9
    assert not threshold_for_fpir(top, nonmated, 1e-4).resolved


@given(st.integers(0, 50), st.integers(1, 50))
def test_intervals_match_scipy_and_cover_the_estimate(k, extra):
    n = k + extra
    lo, hi = binomial_ci(k, n, "wilson")
    ref = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    lo, hi = binomial_ci(k, n, "exact")
    ref = stats.binomtest(k, n).proportion_ci(method="exact")
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert lo <= k / n <= hi


@given(st.integers(0, 10_000))
def test_det_is_monotone(seed):
    rng = np.random.default_rng(seed)
    top = rng.normal(size=200)
    ms = rng.normal(2, 1, size=200)
    mated = np.arange(200) % 3 == 0
    rank = np.where(mated, 1, 0)
    d = det_curve(np.where(mated, ms, top), np.where(mated, ms, NEG), rank, mated, 50)
    assert np.all(np.diff(d.fpir) <= 0) and np.all(np.diff(d.fnir) >= 0)
