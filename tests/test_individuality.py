import numpy as np
import pytest
from math import comb

from fpscale.bench.measure.individuality import compare, model_parameters, pankanti_probability


def test_probabilities_sum_to_one_and_vanish_past_min():
    p = pankanti_probability(100, 30, 40, np.arange(0, 31), 0.2)
    assert p.sum() == pytest.approx(1.0)
    assert pankanti_probability(100, 30, 40, 31, 0.2)[0] == 0.0


def test_against_the_formula_written_out():
    M, m, n, q, l = 60, 12, 15, 4, 0.3
    want = sum(comb(m, r) * comb(M - m, n - r) / comb(M, n) * comb(r, q) * l ** q * (1 - l) ** (r - q)
               for r in range(q, min(m, n) + 1))
    assert pankanti_probability(M, m, n, q, l)[0] == pytest.approx(want, rel=1e-10)


def test_against_a_monte_carlo_of_the_model():
    rng = np.random.default_rng(0)
    M, m, n, l = 50, 12, 14, 0.25
    counts = []
    for _ in range(20000):
        a = rng.choice(M, m, replace=False)
        b = rng.choice(M, n, replace=False)
        shared = len(np.intersect1d(a, b))
        counts.append(rng.binomial(shared, l))
    obs = np.bincount(counts, minlength=6)[:6] / len(counts)
    assert np.allclose(obs, pankanti_probability(M, m, n, np.arange(6), l), atol=0.01)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="M >= max"):
        pankanti_probability(10, 30, 40, 3, 0.2)


def test_model_beside_simulated_impostors():
    r = compare(seed=1, n_pairs=300)
    M, l = model_parameters(r.area_mm2)
    assert (M, l) == (r.cells, r.direction_agreement)
    assert sum(r.observed_p) == pytest.approx(1.0, abs=1e-9)
    # the matcher searches alignments, so it finds at least the chance
    # pairings of one fixed alignment
    assert r.observed_mean >= r.model_mean
