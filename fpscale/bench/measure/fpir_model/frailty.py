"""FPIR(N) with per-probe heterogeneity: the gamma-frailty model, fitted by
maximum likelihood to the ladder's first exceedances.

Given its probe, a search's N non-mate comparisons are independent: the
gallery records are different people, drawn independently of the probe.
What differs is the probe: probe q exceeds T in one comparison with
probability p_q(T), and some probes ('wolves') have a far higher p_q than
others. Write lambda_q = -log(1 - p_q), so that P(no non-mate >= T among N)
= exp(-N lambda_q) exactly, and let lambda_q ~ Gamma(shape k, scale theta)
across probes. Then, exactly,

    1 - FPIR(N, T) = E[exp(-N lambda_q)] = (1 + theta N)^(-k).

The fit is parametrised by m = k theta (the mean of lambda, about the pooled
per-comparison FMR(T)) and tau = 1/k (the squared coefficient of variation
of lambda across probes): 1 - FPIR = (1 + tau m N)^(-1/tau). tau = 0 is the
independence model 1 - exp(-m N) = 1 - (1 - FMR)^N; tau > 0 makes FPIR grow
more slowly than N (locally like N^b, b < 1), as measured.

Why this model: it is the smallest change to the independence model that
allows per-probe heterogeneity, it contains independence as a boundary
point (so a test of tau = 0 is a test of independence), and its likelihood
on ladder data is exact and closed-form. The gamma shape is an assumption:
the far extrapolation in N depends on the left tail of the frailty
distribution near 0 (1 - FPIR ~ (tau m N)^(-1/tau) for large N), which
small rungs barely see. Hence the held-out validation and the decade limit.

Likelihood: for each search the ladder gives the first rung at which its
running maximum reaches T, or none: a discrete-time survival outcome with
gamma frailty. P(first exceedance in segment (N_{r-1}, N_r]) = S(N_{r-1}) -
S(N_r), P(none by N_c) = S(N_c), S(N) = (1 + tau m N)^(-1/tau), N_{-1} = 0.
Searches whose mate lies inside later rungs are right-censored at the last
rung where they are non-mated (option ``mated="censor"``, the default): the
mate's position is random, so the censoring is non-informative, and at every
rung the searches used are exactly those a NIST FPIR counts there.
``mated="exclude"`` keeps only searches non-mated at every rung of the fit.
(k, theta) are fitted by maximum likelihood per threshold, on (log m,
log(1 + tau)) with tau in [0, tau_max]; tau_max = 0 fits the independence
model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from fpscale.bench.measure.fpir_model.ladder import (Estimate, Ladder, Options, decades_past_data,
                                                     resolved_estimate)
from fpscale.bench.measure.fpir_model.resampling import (CHUNK, bootstrap_weights, index_clusters,
                                                         percentile_interval)

_S_BOUNDS = (-60.0, 6.0)      # log m: m from 1e-26 to about 400 per comparison
_TINY = 1e-300


@dataclass(frozen=True)
class FrailtyFit:
    """Gamma-frailty fit at one threshold.

    m: mean per-comparison hazard (about FMR(T)); tau: frailty variance 1/k
    (0 = independence); k, theta: gamma shape and scale (k = inf, theta = 0
    at tau = 0); loglik; threshold; rungs (R,) fitted; n_searches used,
    n_events (first exceedances seen); boot (B, 2) replicate (m, tau);
    converged: share of replicates whose refit converged."""

    m: float
    tau: float
    loglik: float
    threshold: float
    rungs: np.ndarray
    n_searches: int
    n_events: int
    boot: np.ndarray
    converged: float
    options: Options = field(default_factory=Options)

    @property
    def k(self) -> float:
        return float("inf") if self.tau == 0 else 1.0 / self.tau

    @property
    def theta(self) -> float:
        return self.m * self.tau

    @property
    def n_max(self) -> float:
        return float(self.rungs[-1])


def _cum_hazard(m, tau, n) -> np.ndarray:
    """-log S(N) = log(1 + tau m N) / tau (m N at tau = 0); arrays broadcast."""
    x = np.asarray(m, dtype=np.float64) * np.asarray(n, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    tx = tau * x
    small = np.abs(tx) < 1e-5
    with np.errstate(divide="ignore", invalid="ignore"):
        big = np.log1p(np.where(small, 0.0, tx)) / np.where(small, 1.0, tau)
    return np.where(small, x * (1 - tx / 2 + tx * tx / 3), big)


def frailty_fpir(n, m, tau) -> np.ndarray:
    """FPIR(N) = 1 - (1 + tau m N)^(-1/tau) of the gamma-frailty model.

    n: gallery size(s); m: mean per-comparison hazard -log(1 - FMR); tau:
    frailty variance 1/k (0 gives 1 - exp(-m N)). Arrays broadcast."""
    return -np.expm1(-_cum_hazard(m, tau, n))


def independence_fpir(n, fmr) -> np.ndarray:
    """FPIR(N) = 1 - (1 - FMR)^N, every comparison independent (arrays broadcast)."""
    fmr = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(np.asarray(n, dtype=np.float64) * np.log1p(-fmr))


def first_exceedance(ladder: Ladder, t: float, mated: str = "censor") -> tuple[np.ndarray, np.ndarray]:
    """Survival outcome of each search at threshold t.

    Returns (event (Q,), last (Q,)): event = index of the first rung whose
    best non-mate score is >= t, or R if none; last = index of the last rung
    at which the search is non-mated (-1 if none, R-1 for non-mated
    searches). With mated='exclude', last is -1 for every search mated at
    some rung. A search is observed up to rung `last`: an exceedance at
    event <= last, else survival through `last`."""
    R = len(ladder.rungs)
    ex = ladder.top_nonmate >= t
    event = np.where(ex.any(axis=1), ex.argmax(axis=1), R)
    last = np.where(ladder.mate < 0, R - 1,
                    np.searchsorted(ladder.rungs, ladder.mate, side="right") - 1)
    if mated == "exclude":
        last = np.where(last == R - 1, last, -1)
    return event.astype(np.int64), last.astype(np.int64)


def _cells(event: np.ndarray, last: np.ndarray, R: int) -> np.ndarray:
    """Cell of each search in the 2R-cell table (-1 if unused): r for a
    first exceedance in segment r, R + c for survival through rung c."""
    return np.where(last < 0, -1, np.where(event <= last, event, R + last))


def _loglik(s: np.ndarray, rho: np.ndarray, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Log-likelihood (B,) of parameters s = log m, rho = log(1 + tau) (B,)
    for cell counts (B, 2R) at rungs n (R,)."""
    R = len(n)
    m = np.exp(s)[:, None]
    tau = np.expm1(rho)[:, None]
    H = _cum_hazard(m, tau, n[None, :])                      # (B, R)
    Hp = np.concatenate([np.zeros((len(s), 1)), H[:, :-1]], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp_event = -Hp + np.log(np.maximum(-np.expm1(-(H - Hp)), _TINY))
    ev, sv = counts[:, :R], counts[:, R:]
    return (np.where(ev > 0, ev * lp_event, 0.0).sum(axis=1) - (sv * H).sum(axis=1))


def _start(counts: np.ndarray, n: np.ndarray) -> float:
    """log m of a constant hazard: events / exposure (exposure to the end
    of the event's segment, a slight underestimate of m)."""
    R = len(n)
    ev, sv = counts[:R], counts[R:]
    exposure = float((ev * n).sum() + (sv * n).sum())
    return float(np.log(max(ev.sum(), 0.5) / max(exposure, 1.0)))


def _fit_one(counts: np.ndarray, n: np.ndarray, rho_max: float) -> tuple[float, float, float]:
    """Maximum likelihood (s, rho, loglik) for one table of counts (2R,):
    the vectorised ascent from a few starting points, the best kept; where
    none settles, L-BFGS-B (scipy.optimize) from the best of them."""
    s0 = _start(counts, n)
    rhos = [0.0] if rho_max == 0 else [0.0, min(np.log1p(1.0), rho_max), min(np.log1p(30.0), rho_max)]
    starts = np.array([[s0 + r0, r0] for r0 in rhos])
    c = np.tile(counts, (len(starts), 1))
    s, rho, ok = _refit_many(c, n, starts, rho_max)
    ll = _loglik(s, rho, c, n)
    i = int(np.argmax(np.where(ok, ll, -np.inf))) if ok.any() else int(np.argmax(ll))
    if ok[i]:
        return float(s[i]), float(rho[i]), float(ll[i])

    def nll(p):
        return -float(_loglik(np.array([p[0]]), np.array([p[1]]), counts[None, :], n)[0])

    res = optimize.minimize(nll, np.array([s[i], rho[i]]), method="L-BFGS-B",
                            bounds=[_S_BOUNDS, (0.0, rho_max)])
    return float(res.x[0]), float(res.x[1]), -float(res.fun)


def _refit_many(counts: np.ndarray, n: np.ndarray, start: np.ndarray,
                rho_max: float, iters: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum likelihood for many tables of counts (B, 2R) at once, from
    start (2,) or (B, 2): a damped Newton (Levenberg-Marquardt) ascent on
    (s, rho), vectorised over the rows, with finite-difference derivatives,
    inside the box s in _S_BOUNDS, rho in [0, rho_max]. Returns (s (B,),
    rho (B,), converged (B,) bool)."""
    B = len(counts)
    p = np.broadcast_to(np.asarray(start, dtype=np.float64), (B, 2)).copy()
    lo = np.array([_S_BOUNDS[0], 0.0])
    hi = np.array([_S_BOUNDS[1], rho_max])
    free_rho = bool(rho_max > 0)
    lam = np.full(B, 1e-3)
    h = 1e-4
    f = _loglik(p[:, 0], p[:, 1], counts, n)
    done = np.zeros(B, dtype=bool)
    for _ in range(iters):
        act = np.flatnonzero(~done)
        if len(act) == 0:
            break
        pa, ca, fa = p[act], counts[act], f[act]

        def ll(ds, dr):
            return _loglik(pa[:, 0] + ds, pa[:, 1] + dr, ca, n)

        fsp, fsm = ll(h, 0.0), ll(-h, 0.0)
        g0 = (fsp - fsm) / (2 * h)
        h00 = (fsp - 2 * fa + fsm) / h ** 2
        if free_rho:
            frp, frm = ll(0.0, h), ll(0.0, -h)
            g1 = (frp - frm) / (2 * h)
            h11 = (frp - 2 * fa + frm) / h ** 2
            h01 = (ll(h, h) - ll(h, -h) - ll(-h, h) + ll(-h, -h)) / (4 * h * h)
        else:
            g1 = h11 = h01 = np.zeros(len(act))
        # coordinates held at a bound the gradient pushes against
        hold0 = ((pa[:, 0] <= lo[0]) & (g0 < 0)) | ((pa[:, 0] >= hi[0]) & (g0 > 0))
        hold1 = (np.full(len(act), not free_rho) | ((pa[:, 1] <= lo[1]) & (g1 < 0))
                 | ((pa[:, 1] >= hi[1]) & (g1 > 0)))
        g0 = np.where(hold0, 0.0, g0)
        g1 = np.where(hold1, 0.0, g1)
        a00 = np.maximum(-h00, 1e-12)
        a11 = np.maximum(-h11, 1e-12)
        a01 = np.where(hold0 | hold1, 0.0, -h01)
        l = lam[act]
        m00 = a00 * (1 + l) + l
        m11 = a11 * (1 + l) + l
        det = m00 * m11 - a01 * a01
        bad = det <= 0
        m00 = np.where(bad, m00 + np.abs(a01), m00)
        m11 = np.where(bad, m11 + np.abs(a01), m11)
        det = m00 * m11 - a01 * a01
        d0 = (m11 * g0 - a01 * g1) / det
        d1 = (m00 * g1 - a01 * g0) / det
        d0 = np.where(hold0, 0.0, d0)
        d1 = np.where(hold1, 0.0, d1)
        step = np.clip(np.stack([d0, d1], axis=1), -3.0, 3.0)
        trial = np.clip(pa + step, lo, hi)
        ft = _loglik(trial[:, 0], trial[:, 1], ca, n)
        better = ft >= fa - 1e-12
        moved = np.abs(trial - pa).max(axis=1)
        p[act] = np.where(better[:, None], trial, pa)
        f[act] = np.where(better, ft, fa)
        lam[act] = np.where(better, np.maximum(l / 4, 1e-9), l * 5)
        # settled: a nearly undamped step that moves or gains almost nothing
        gain = ft - fa
        settled = better & (l <= 1e-2) & ((gain <= 1e-10 * np.maximum(1.0, np.abs(fa))) | (moved < 1e-10))
        done[act] = settled | (lam[act] > 1e12)
    ok = done & (lam < 1e12)
    return p[:, 0], p[:, 1], ok


def _table(ladder: Ladder, t: float, mated: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(cells (Q,), cluster counts table (G, 2R), G)."""
    R = len(ladder.rungs)
    event, last = first_exceedance(ladder, t, mated)
    cells = _cells(event, last, R)
    cidx, g = index_clusters(ladder.cluster, len(cells))
    table = np.zeros((g, 2 * R))
    use = cells >= 0
    np.add.at(table, (cidx[use], cells[use]), 1.0)
    return cells, table, g


def fit_frailty(ladder: Ladder, t: float, options: Options = Options()) -> FrailtyFit:
    """Gamma-frailty model fitted by maximum likelihood to the ladder's
    first-exceedance outcomes at threshold t (score units), with
    options.n_boot replicates resampling searches (or clusters)."""
    n = ladder.rungs
    R = len(n)
    cells, table, g = _table(ladder, t, options.mated)
    counts = table.sum(axis=0)
    if counts.sum() == 0:
        raise ValueError("no search is non-mated at the first rung")
    rho_max = 0.0 if options.model == "independence" else float(np.log1p(options.tau_max))
    s, rho, ll = _fit_one(counts, n, rho_max)
    boots, conv = [], []
    if ladder.cluster is None:
        # resampling searches only redistributes them over the cells
        rng = np.random.default_rng(options.seed)
        tot = int(counts.sum())
        chunks = (rng.multinomial(tot, counts / tot, size=b).astype(np.float64)
                  for b in np.diff(np.r_[0:options.n_boot:CHUNK, options.n_boot]))
    else:
        chunks = (w @ table for w in bootstrap_weights(g, options.n_boot, options.seed))
    for c in chunks:
        bs, br, ok = _refit_many(c, n, np.array([s, rho]), rho_max)
        for i in np.flatnonzero(~ok):           # the rare row Newton did not settle
            bs[i], br[i], _ = _fit_one(c[i], n, rho_max)
        boots.append(np.stack([np.exp(bs), np.expm1(br)], axis=1))
        conv.append(ok)
    boot = np.concatenate(boots)
    return FrailtyFit(m=float(np.exp(s)), tau=float(np.expm1(rho)), loglik=ll, threshold=float(t),
                      rungs=n.copy(), n_searches=int(counts.sum()), n_events=int(counts[:R].sum()),
                      boot=boot, converged=float(np.concatenate(conv).mean()), options=options)


def predict_fpir(fit: FrailtyFit, n: float, options: Options | None = None) -> Estimate:
    """FPIR at gallery size n from a frailty fit, with the percentile
    interval of its bootstrap replicates; None past options.max_decades."""
    options = options or fit.options
    value = float(frailty_fpir(n, fit.m, fit.tau))
    reps = frailty_fpir(n, fit.boot[:, 0], fit.boot[:, 1])
    lo, hi = percentile_interval(reps, options.level)
    dn = decades_past_data(float(n), 1.0, fit.n_max)
    df = decades_past_data(value, 1.0 / max(fit.n_searches, 1), 1.0)
    model = ("independence" if options.model == "independence" or options.tau_max == 0
             else "gamma frailty")
    return resolved_estimate(value, (lo, hi), (dn, df),
                             f"FPIR(N={n:g}, T={fit.threshold:.6g}), {model} model", options)


def predict_same_searches(ladder: Ladder, fit: FrailtyFit, t: float, n_test: float,
                          options: Options) -> Estimate:
    """FPIR the searches non-mated at n_test should show there, given their
    outcomes up to the fit's largest rung, with a prediction interval
    (fpscale.bench.measure.fpir_model.validation.validate says how)."""
    it = ladder.rung_index(n_test)
    nm_test = ladder.nonmated[:, it]
    of = max(int(nm_test.sum()), 1)
    early = int((ladder.top_nonmate[nm_test, len(fit.rungs) - 1] >= t).sum())
    surv = int(nm_test.sum()) - early

    def cross(m, tau):
        # P(first exceedance in (n_fit, n_test] | none by n_fit) = 1 - S(n_test)/S(n_fit)
        return -np.expm1(-(_cum_hazard(m, tau, n_test) - _cum_hazard(m, tau, fit.n_max)))

    rng = np.random.default_rng([options.seed, 1])
    same = (early + rng.binomial(surv, np.clip(cross(fit.boot[:, 0], fit.boot[:, 1]), 0, 1))) / of
    value = (early + surv * float(cross(fit.m, fit.tau))) / of
    lo, hi = percentile_interval(same, options.level)
    return Estimate(float(value), float(lo), float(hi), decades_past_data(n_test, 1.0, fit.n_max),
                    decades_past_data(value, 1.0 / of, 1.0), "",
                    f"FPIR of these {of} searches at N={n_test:g} given their ladder up to {fit.n_max:g}",
                    options.level)
