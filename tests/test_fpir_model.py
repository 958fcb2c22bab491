"""Tests of fpscale.bench.measure.fpir_model: closed forms, parameter recovery on data drawn
from known models, coverage of the intervals over many simulated datasets,
and mutants (a halved exponent, a halved shift, a wrong tail shape) that
these checks must reject."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from fpscale.bench.measure import fpir_model as fm
from fpscale.bench.measure.fpir_model import frailty, validation
from fpscale.bench.measure.fpir_model import tail as tail_model
from fpscale.bench.measure.metrics import binomial_ci
from fpscale.bench.measure.fpir_model import (Estimate, Ladder, Options, Volume,
                              decades_past_data, first_exceedance, fit_frailty, fit_shift,
                              fit_tail, frailty_fpir, independence_fpir, mated_errors,
                              measured_fpir, people_per_year, predict_fpir, predict_shift,
                              tail_fpir, tail_threshold, threshold_at_fpir, validate)

RUNGS = np.array([250, 500, 1000, 2000, 20000])


# ---------------------------------------------------------------- simulators

def frailty_ladder(rng, q, rungs, k, theta, mated_share=0.0):
    """A ladder whose first exceedances follow the gamma-frailty model
    exactly: lambda_q ~ Gamma(k, theta) (theta itself when k is inf), the
    first exceeding comparison ~ Exp(lambda_q); scores are 1 once it is
    inside the prefix, 0 before, so any threshold in (0, 1] reads them."""
    rungs = np.asarray(rungs, dtype=float)
    lam = np.full(q, theta) if np.isinf(k) else rng.gamma(k, theta, size=q)
    first = rng.exponential(size=q) / lam
    top = (rungs[None, :] >= first[:, None]).astype(float)
    mate = np.full(q, -1)
    mated = rng.random(q) < mated_share
    mate[mated] = rng.integers(0, int(rungs[-1]), mated.sum())
    return Ladder(rungs, top, mate)


def gumbel_ladder(rng, q, rungs, b, spread):
    """A ladder whose impostor scores are i.i.d. Gumbel(a_q, b) given the
    probe, a_q ~ N(0, spread): the best of n is Gumbel(a_q + b ln n, b)
    exactly, drawn per segment, then a running maximum."""
    rungs = np.asarray(rungs, dtype=float)
    seg = np.diff(np.r_[0.0, rungs])
    a = rng.normal(0.0, spread, size=q)
    g = -np.log(rng.exponential(size=(q, len(rungs))))
    top = a[:, None] + b * (np.log(seg)[None, :] + g)
    return Ladder(rungs, top, np.full(q, -1))


def gumbel_fpir(n, t, b, spread):
    """True FPIR(n, t) of gumbel_ladder: E_a[1 - exp(-n exp(-(t - a) / b))]."""
    a = np.linspace(-9 * spread, 9 * spread, 8001)
    w = stats.norm.pdf(a, 0.0, spread)
    f = -np.expm1(-n * np.exp(-(t - a) / b))
    return float(np.trapezoid(w * f, a))


def halved_hazard(m, tau, n):
    """A mutant: the cumulative hazard with its exponent 1/tau halved."""
    return 0.5 * _REAL_HAZARD(m, tau, n)


_REAL_HAZARD = frailty._cum_hazard


# ---------------------------------------------------------------- closed forms

def test_frailty_closed_forms():
    n = np.array([0.0, 1.0, 10.0, 1e3, 1e6])
    m = 1e-4
    assert frailty_fpir(n, m, 0.0) == pytest.approx(-np.expm1(-m * n), rel=1e-12)
    assert frailty_fpir(n, m, 1.0) == pytest.approx(m * n / (1 + m * n), rel=1e-12)
    assert frailty_fpir(n, m, 0.5) == pytest.approx(1 - (1 + 0.5 * m * n) ** -2.0, rel=1e-12)
    # continuous at tau = 0, and the exact independence model for FMR = 1 - exp(-m)
    assert frailty_fpir(n, m, 1e-13) == pytest.approx(frailty_fpir(n, m, 0.0), rel=1e-9)
    fmr = 3e-5
    assert independence_fpir(n, fmr) == pytest.approx(frailty_fpir(n, -np.log1p(-fmr), 0.0), rel=1e-10)
    assert frailty_fpir(0.0, m, 2.0) == 0.0
    # heterogeneity lowers FPIR below independence at the same mean hazard
    assert np.all(np.diff([float(frailty_fpir(1e5, m, tau)) for tau in (0, 0.1, 1, 10)]) < 0)


def _formula_matches_monte_carlo(fpir_fn) -> bool:
    """FPIR(N) of lambda ~ Gamma(k, theta) by Monte Carlo against fpir_fn(n, m, tau)."""
    rng = np.random.default_rng(7)
    ok = True
    for k, theta in ((0.3, 1e-3), (2.0, 2e-5), (0.05, 0.1)):
        lam = rng.gamma(k, theta, size=400_000)
        for n in (100.0, 1e4, 1e6):
            mc = -np.expm1(-n * lam)
            se = mc.std() / np.sqrt(len(mc))
            ok &= abs(float(fpir_fn(n, k * theta, 1 / k)) - mc.mean()) < 5 * se + 1e-12
    return bool(ok)


def test_frailty_formula_is_the_gamma_mixture():
    assert _formula_matches_monte_carlo(frailty_fpir)


def test_halved_exponent_fails_the_closed_form_check():
    assert not _formula_matches_monte_carlo(lambda n, m, tau: -np.expm1(-halved_hazard(m, tau, n)))


def test_independence_against_simulated_comparisons():
    rng = np.random.default_rng(3)
    fmr, n, q = 2e-4, 3000, 20000
    hits = rng.binomial(n, fmr, size=q) > 0
    lo, hi = binomial_ci(hits.sum(), q, level=0.999)
    assert lo <= independence_fpir(n, fmr) <= hi
    assert not lo <= independence_fpir(n / 2, fmr) <= hi


def test_decades_past_data():
    assert decades_past_data(5000, 1, 20000) == 0.0
    assert decades_past_data(200_000, 1, 20000) == pytest.approx(1.0)
    assert decades_past_data(1.3e8, 1, 2e4) == pytest.approx(np.log10(6500))
    assert decades_past_data(1e-5, 1e-3, 1.0) == pytest.approx(2.0)
    assert decades_past_data(0.0, 1e-3, 1.0) == np.inf


# ---------------------------------------------------------------- ladder data

def small_ladder():
    rungs = [10, 20, 40]
    top = np.array([[0.9, 0.9, 0.9],      # non-mated, exceeds at rung 0
                    [0.1, 0.6, 0.7],      # non-mated, exceeds at rung 1 (T = 0.5)
                    [0.1, 0.2, 0.3],      # non-mated, never
                    [0.2, 0.1, 0.8],      # mate 15: non-mated at rung 0 only; the 0.1 is made a running max
                    [0.7, 0.7, 0.7],      # mate 5: mated everywhere
                    [0.1, 0.1, 0.9]])     # mate 30: non-mated at rungs 0, 1
    mate = np.array([-1, -1, -1, 15, 5, 30])
    return Ladder(rungs, top, mate)


def test_ladder_checks_and_running_max():
    lad = small_ladder()
    assert lad.top_nonmate[3].tolist() == [0.2, 0.2, 0.8]
    assert lad.nonmated.sum(axis=0).tolist() == [5, 4, 3]
    assert lad.upto(25).rungs.tolist() == [10, 20]
    with pytest.raises(ValueError):
        Ladder([10, 5], np.zeros((2, 2)), np.array([-1, -1]))
    with pytest.raises(ValueError):
        Ladder([10, 20], np.zeros((3, 2)), np.array([-1, -1]))
    with pytest.raises(ValueError):
        lad.rung_index(30)


def test_first_exceedance_and_measured_fpir():
    lad = small_ladder()
    event, last = first_exceedance(lad, 0.5)
    assert event.tolist() == [0, 1, 3, 2, 0, 2]
    assert last.tolist() == [2, 2, 2, 0, -1, 1]
    _, last_x = first_exceedance(lad, 0.5, mated="exclude")
    assert last_x.tolist() == [2, 2, 2, -1, -1, -1]
    me = measured_fpir(lad, 0.5)
    assert me.of.tolist() == [5, 4, 3]
    assert me.count.tolist() == [1, 2, 2]          # rung 2: searches 0 and 1 (search 2 never)
    assert me.fpir[1] == pytest.approx(0.5)
    assert np.all(me.lo <= me.fpir) and np.all(me.fpir <= me.hi)
    assert threshold_at_fpir(lad, 1 / 3) == pytest.approx(np.quantile([0.9, 0.7, 0.3], 2 / 3))


# ---------------------------------------------------------------- frailty fits

def test_frailty_fit_recovers_parameters():
    rng = np.random.default_rng(11)
    k, theta = 0.4, 2e-4
    lad = frailty_ladder(rng, 40_000, [250, 500, 1000, 2000, 5000, 10000, 20000], k, theta, 0.3)
    fit = fit_frailty(lad, 0.5, Options(n_boot=400, seed=1))
    assert fit.converged > 0.98
    ks = 1 / fit.boot[:, 1]
    thetas = fit.boot[:, 0] * fit.boot[:, 1]
    assert np.quantile(ks, 0.005) <= k <= np.quantile(ks, 0.995)
    assert np.quantile(thetas, 0.005) <= theta <= np.quantile(thetas, 0.995)
    assert fit.k == pytest.approx(k, rel=0.2) and fit.theta == pytest.approx(theta, rel=0.3)
    # the searches excluded rather than censored tell the same story
    fx = fit_frailty(lad, 0.5, Options(n_boot=1, mated="exclude"))
    assert fx.k == pytest.approx(k, rel=0.25) and fx.n_searches < fit.n_searches


def test_halved_exponent_fails_parameter_recovery(monkeypatch):
    rng = np.random.default_rng(11)
    k, theta = 0.4, 2e-4
    lad = frailty_ladder(rng, 40_000, [250, 500, 1000, 2000, 5000, 10000, 20000], k, theta)
    monkeypatch.setattr(frailty, "_cum_hazard", halved_hazard)
    fit = fit_frailty(lad, 0.5, Options(n_boot=200, seed=1))
    ks = 1 / fit.boot[:, 1]
    assert not np.quantile(ks, 0.005) <= k <= np.quantile(ks, 0.995)


def test_independence_is_recovered():
    # heterogeneity shows only once FPIR is not small (tau m N of order 1):
    # FPIR runs here from 5% at the first rung to 33% at the last fitted
    rng = np.random.default_rng(5)
    m = 2e-4
    lad = frailty_ladder(rng, 20_000, RUNGS, np.inf, m)
    fit = fit_frailty(lad.upto(2000), 0.5, Options(n_boot=500, seed=2))
    assert fit.m == pytest.approx(m, rel=0.05)
    assert fit.tau < 0.1 and np.quantile(fit.boot[:, 1], 0.025) == 0.0
    est = predict_fpir(fit, 20000)
    assert est.lo <= float(independence_fpir(20000, -np.expm1(-m))) <= est.hi
    # the independence fit proper: tau held at 0
    ind = fit_frailty(lad.upto(2000), 0.5, Options(n_boot=50, model="independence"))
    assert ind.tau == 0.0 and np.all(ind.boot[:, 1] == 0.0) and ind.k == np.inf


def test_vectorised_refit_matches_scipy():
    rng = np.random.default_rng(2)
    lad = frailty_ladder(rng, 3000, RUNGS[:4], 0.3, 1e-4, 0.3)
    _, table, _ = frailty._table(lad, 0.5, "censor")
    counts = table.sum(axis=0)
    tables = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=20).astype(float)
    rho_max = np.log1p(1e4)
    s, r, ok = frailty._refit_many(tables, lad.rungs, np.array([-9.0, 0.5]), rho_max)
    assert ok.all()
    ours = frailty._loglik(s, r, tables, lad.rungs)
    for i, c in enumerate(tables):
        res = frailty.optimize.minimize(
            lambda p: -float(frailty._loglik(p[:1], p[1:], c[None, :], lad.rungs)[0]),
            np.array([s[i] + 0.3, 1.0]), method="Nelder-Mead", bounds=[(-60, 6), (0, rho_max)],
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        assert ours[i] >= -res.fun - 1e-6


def _frailty_coverage(n_sets: int, n_boot: int) -> tuple[float, float]:
    """Share of datasets whose interval at 10x the largest fitted rung
    holds (population interval) the true FPIR and (same-searches interval)
    the FPIR measured there."""
    rng = np.random.default_rng(21)
    k, theta = 0.3, 1e-4
    truth = float(frailty_fpir(20000, k * theta, 1 / k))
    pop = same = 0
    for d in range(n_sets):
        lad = frailty_ladder(rng, 3000, RUNGS, k, theta, 0.3)
        v = validate(lad, 0.5, 2000, 20000, Options(n_boot=n_boot, seed=d))
        pop += v.predicted.lo <= truth <= v.predicted.hi
        same += v.inside
    return pop / n_sets, same / n_sets


def test_frailty_prediction_interval_coverage_at_10x():
    pop, same = _frailty_coverage(80, 300)
    assert 0.85 <= pop <= 1.0
    assert 0.85 <= same <= 1.0


def test_halved_exponent_fails_coverage(monkeypatch):
    # the fit is not fooled (it refits k), so the mutant is made in the
    # prediction alone: FPIR at 10x with the exponent 1/tau halved
    real = frailty.predict_fpir

    def mutant(fit, n, options=None):
        e = real(fit, n, options)
        f = -np.expm1(-halved_hazard(fit.boot[:, 0], fit.boot[:, 1], n))
        return Estimate(e.value, float(np.quantile(f, 0.025)), float(np.quantile(f, 0.975)),
                        e.decades_n, e.decades_fpir)

    monkeypatch.setattr(validation, "predict_fpir", mutant)
    pop, _ = _frailty_coverage(20, 200)
    assert pop < 0.5


def test_mated_searches_are_censored_not_dropped():
    rng = np.random.default_rng(9)
    lad = frailty_ladder(rng, 6000, RUNGS, 0.5, 1e-4, mated_share=0.5)
    fit = fit_frailty(lad, 0.5, Options(n_boot=1))
    event, last = first_exceedance(lad, 0.5)
    assert fit.n_searches == int((last >= 0).sum()) > int((last == len(RUNGS) - 1).sum())
    assert fit.n_events == int(((event <= last) & (last >= 0)).sum())


def test_cluster_resampling_widens_intervals():
    rng = np.random.default_rng(4)
    base = frailty_ladder(rng, 1500, RUNGS, 0.5, 1e-4)
    rep = 3    # every person searched three times, identically
    lad = Ladder(base.rungs, np.repeat(base.top_nonmate, rep, axis=0), np.repeat(base.mate, rep))
    persons = Ladder(lad.rungs, lad.top_nonmate, lad.mate, cluster=np.repeat(np.arange(1500), rep))
    opt = Options(n_boot=600, seed=3)

    def width(x):
        e = predict_fpir(fit_frailty(x, 0.5, opt), 20000, replace_limit(opt))
        return e.hi - e.lo

    w_base, w_naive, w_persons = width(base.upto(2000)), width(lad.upto(2000)), width(persons.upto(2000))
    assert w_naive == pytest.approx(w_base / np.sqrt(rep), rel=0.3)
    assert w_persons == pytest.approx(w_base, rel=0.25)
    m_naive, m_persons = measured_fpir(lad, 0.5, opt), measured_fpir(persons, 0.5, opt)
    assert np.all(m_persons.hi - m_persons.lo > 1.3 * (m_naive.hi - m_naive.lo))


def test_cluster_resampling_in_the_shift_and_tail_fits():
    rng = np.random.default_rng(10)
    base = gumbel_ladder(rng, 1200, RUNGS, 0.04, 0.1)
    sizes = rng.integers(1, 5, size=1200)           # persons searched 1 to 4 times, identically
    idx = np.repeat(np.arange(1200), sizes)
    persons = Ladder(base.rungs, base.top_nonmate[idx], base.mate[idx], cluster=idx)
    opt = Options(n_boot=600, seed=3)

    def shift_width(x):
        e = predict_shift(fit_shift(x.upto(2000), opt), 20000, 0.45)
        return e.hi - e.lo

    # persons weigh by their number of searches, so their interval is no
    # narrower than that of one search each, and wider than the naive one
    naive = dataclasses.replace(persons, cluster=None)
    w_base, w_persons, w_naive = shift_width(base), shift_width(persons), shift_width(naive)
    assert w_persons > 0.85 * w_base and w_persons > 1.25 * w_naive
    t_base = fit_tail(base.top_nonmate[:, -1], options=opt)
    t_persons = fit_tail(persons.top_nonmate[:, -1], persons.cluster, opt)
    t_naive = fit_tail(persons.top_nonmate[:, -1], options=opt)
    for f in (0.05, 1e-3):
        w = [tail_threshold(x, f).hi - tail_threshold(x, f).lo for x in (t_base, t_persons, t_naive)]
        assert w[1] > 0.85 * w[0] and w[2] < 0.85 * w[1]
    # inside the data, the persons' replicate FPIR is a share of searches
    e = tail_fpir(t_persons, float(np.quantile(persons.top_nonmate[:, -1], 0.8)))
    assert e.lo < e.value < e.hi and e.value == pytest.approx(0.2, abs=0.01)


def replace_limit(opt, decades=2.0):
    return Options(**{**opt.__dict__, "max_decades": decades})


def test_deterministic_given_seed():
    rng = np.random.default_rng(8)
    lad = frailty_ladder(rng, 2000, RUNGS, 0.5, 1e-4)
    a = fit_frailty(lad, 0.5, Options(n_boot=300, seed=5))
    b = fit_frailty(lad, 0.5, Options(n_boot=300, seed=5))
    c = fit_frailty(lad, 0.5, Options(n_boot=300, seed=6))
    assert np.array_equal(a.boot, b.boot) and not np.array_equal(a.boot, c.boot)
    x = rng.gumbel(size=1000)
    assert tail_fpir(fit_tail(x, options=Options(n_boot=200)), 4.0) == \
        tail_fpir(fit_tail(x, options=Options(n_boot=200)), 4.0)


def test_not_resolved_past_the_limit():
    rng = np.random.default_rng(6)
    fit = fit_frailty(frailty_ladder(rng, 3000, RUNGS, 0.5, 1e-4).upto(2000), 0.5, Options(n_boot=100))
    ok = predict_fpir(fit, 20000)
    far = predict_fpir(fit, 1.3e8)
    assert ok.resolved and ok.decades_n == pytest.approx(1.0)
    assert not far.resolved and far.value is None and far.lo is None
    assert far.decades_n == pytest.approx(np.log10(1.3e8 / 2000)) and "not resolved" in far.reason
    assert predict_fpir(fit, 1.3e8, Options(max_decades=5)).resolved
    tail = fit_tail(rng.gumbel(size=2000), options=Options(n_boot=100))
    assert tail_threshold(tail, 1e-4).resolved
    deep = tail_threshold(tail, 1e-7)
    assert not deep.resolved and deep.decades_fpir == pytest.approx(np.log10(2000 * 1e-7) * -1)


# ---------------------------------------------------------------- shift model

def test_shift_recovers_b_and_predicts_10x():
    rng = np.random.default_rng(12)
    b, spread = 0.04, 0.1
    lad = gumbel_ladder(rng, 20_000, RUNGS, b, spread)
    fit = fit_shift(lad.upto(2000), Options(n_boot=300, seed=1))
    assert np.quantile(fit.boot_b, 0.005) <= b <= np.quantile(fit.boot_b, 0.995)
    assert fit.b == pytest.approx(b, rel=0.1)
    t = 0.45
    e = predict_shift(fit, 20000, t)
    assert e.lo <= gumbel_fpir(20000, t, b, spread) <= e.hi


def _shift_coverage(n_sets: int, n_boot: int, factor: float = 1.0) -> float:
    """Share of datasets whose shift-model interval at 10x holds the true
    FPIR; factor scales the fitted b (1 is the model, 0.5 a mutant)."""
    rng = np.random.default_rng(31)
    b, spread, t = 0.04, 0.1, 0.5
    truth = gumbel_fpir(20000, t, b, spread)
    hit = 0
    for d in range(n_sets):
        fit = fit_shift(gumbel_ladder(rng, 3000, RUNGS, b, spread).upto(2000), Options(n_boot=n_boot, seed=d))
        if factor != 1.0:
            fit = dataclasses.replace(fit, b=fit.b * factor, boot_b=fit.boot_b * factor)
        e = predict_shift(fit, 20000, t)
        hit += e.lo <= truth <= e.hi
    return hit / n_sets


def test_shift_prediction_interval_coverage_at_10x():
    assert 0.85 <= _shift_coverage(60, 200) <= 1.0


def test_halved_shift_fails_coverage():
    assert _shift_coverage(15, 150, factor=0.5) < 0.5


def test_validate_shift_and_frailty_on_gumbel_data():
    rng = np.random.default_rng(14)
    lad = gumbel_ladder(rng, 3000, RUNGS, 0.04, 0.2)
    t = threshold_at_fpir(lad, 0.05)
    vs = validate(lad, t, 2000, 20000, Options(n_boot=300, model="shift"))
    assert vs.predicted_same is None and vs.decades == pytest.approx(1.0)
    assert vs.inside and vs.overlap and vs.count == round(0.05 * 3000)
    vf = validate(lad, t, 2000, 20000, Options(n_boot=300))
    vi = validate(lad, t, 2000, 20000, Options(n_boot=300, model="independence"))
    assert vf.model == "frailty" and vi.fit.tau == 0.0
    # independence overestimates what heterogeneous probes show
    assert vi.predicted.value > 1.5 * vi.measured and not vi.inside


# ---------------------------------------------------------------- tail in T

def test_tail_recovers_gpd_parameters():
    rng = np.random.default_rng(15)
    xi, sigma = -0.2, 1.0
    x = stats.genpareto.rvs(xi, scale=sigma, size=50_000, random_state=rng)
    tail = fit_tail(x, options=Options(n_boot=200))
    # excesses over u of a GPD are GPD with the same shape, scale sigma + xi u
    assert tail.xi == pytest.approx(xi, abs=0.05)
    assert tail.sigma == pytest.approx(sigma + xi * tail.u, rel=0.05)
    assert tail.n_exceed == 5000
    assert np.quantile(tail.boot_xi, 0.005) <= xi <= np.quantile(tail.boot_xi, 0.995)


def _tail_coverage(n_sets: int, n_boot: int, sf=None) -> tuple[float, float]:
    """Over datasets of 2000 draws from GPD(-0.2, 1): the share whose
    interval holds the true threshold at FPIR 1e-4 (0.7 decades past the
    data) and the share holding the true FPIR 1e-4 at that threshold."""
    rng = np.random.default_rng(41)
    dist = stats.genpareto(-0.2)
    f = 1e-4
    tq = dist.isf(f)
    cq = cf = 0
    for d in range(n_sets):
        # the decade limit is lifted: a noisy estimate may lie further out than the truth
        tail = fit_tail(dist.rvs(size=2000, random_state=rng),
                        options=Options(n_boot=n_boot, seed=d, max_decades=4))
        q, p = tail_threshold(tail, f), tail_fpir(tail, tq)
        cq += q.resolved and q.lo <= tq <= q.hi
        cf += p.resolved and p.lo <= f <= p.hi
    return cq / n_sets, cf / n_sets


def test_tail_interval_coverage_beyond_the_data():
    cq, cf = _tail_coverage(120, 300)
    assert 0.85 <= cq <= 1.0
    assert 0.85 <= cf <= 1.0


def test_wrong_tail_shape_fails_coverage(monkeypatch):
    real = tail_model._gpd_isf
    monkeypatch.setattr(tail_model, "_gpd_isf", lambda p, xi, sigma: real(p, xi / 2, sigma))
    cq, _ = _tail_coverage(20, 150)
    assert cq < 0.5


def test_tail_fpir_inside_the_data_is_empirical():
    rng = np.random.default_rng(16)
    x = rng.normal(size=3000)
    tail = fit_tail(x, options=Options(n_boot=300))
    e = tail_fpir(tail, 1.0)
    assert e.value == pytest.approx((x >= 1.0).mean()) and e.lo < e.value < e.hi
    q = tail_threshold(tail, 0.3)
    assert q.value == pytest.approx(np.quantile(x, 0.7)) and q.lo < q.value < q.hi
    with pytest.raises(ValueError):
        fit_tail(x[:100])


# ---------------------------------------------------------------- people

def test_people_per_year_bounds():
    f = Estimate(1e-3, 5e-4, 2e-3, 1.0, 0.0)
    vol = Volume(searches_per_year=3.7e6, mated_share=0.063, bookings_per_person=2.0)
    p = people_per_year(f, vol)
    fp = 3.7e6 * (1 - 0.063) * 1e-3
    assert p.fp_searches.value == pytest.approx(fp)
    assert p.fp_searches.lo == pytest.approx(fp / 2) and p.fp_searches.hi == pytest.approx(2 * fp)
    assert p.persons_low.value == pytest.approx(fp / 2)
    assert p.persons_high.value == pytest.approx(3.7e6 * (1 - 0.063) / 2 * (1 - (1 - 1e-3) ** 2))
    assert p.persons_low.value < p.persons_high.value <= p.fp_searches.value
    assert "person" in p.persons_low.what and "searches" in p.fp_searches.what
    one = people_per_year(f, Volume(3.7e6, 0.063, 1.0))
    assert one.persons_low.value == pytest.approx(one.persons_high.value) == pytest.approx(fp)
    gone = people_per_year(Estimate(None, None, None, 4.0, 0.0, "not resolved: far"), vol)
    assert gone.persons_high.value is None and "not resolved" in gone.persons_high.reason
    with pytest.raises(ValueError):
        people_per_year(f, Volume(1e6, 0.1, 0.5))


def test_mated_error_modes():
    top = np.array([0.9, 0.6, 0.4, 0.8, 0.2])
    mate_score = np.array([0.5, 0.7, 0.9, 0.85, 0.1])
    e = mated_errors(top, mate_score, 0.55)
    assert e.of == 5
    assert e.wrong_top[0] == pytest.approx(1 / 5)     # only the first: non-mate above T and above the mate
    assert e.any_nonmate[0] == pytest.approx(3 / 5)   # 0.9, 0.6, 0.8
    assert e.wrong_top[1] <= e.wrong_top[0] <= e.wrong_top[2]
