"""FPIR(N) from how the per-search maxima move with N: the shift model.

The gamma shape fixes how FPIR bends with N: its local exponent
d log(-log(1 - FPIR)) / d log N only falls as N grows. Measured ladders
show it flat or rising (a few probes saturate early, the rest grow about
linearly), which no gamma frailty follows. The shift model uses the
threshold axis instead of a frailty family. If each probe's impostor
scores have an exponential upper tail with a common scale b (the Gumbel
domain), a search's best of N non-mate scores is a_q + b ln N + b G with
G a standard Gumbel variable, whatever the probe's location a_q. The
distribution of per-search maxima across searches then moves right by
b ln(N'/N) from N to N', so

    FPIR(N', T) = FPIR(N, T - b ln(N'/N)),

with no assumption on how the a_q vary across probes. b is the mean
least-squares slope on ln N_r of the upper quantiles of the per-search
maxima (16 FPIR levels from 20 searches above to 0.5), over the searches
non-mated at every rung, so that the rungs compare the same searches.
Extrapolating in N becomes reading the largest rung at a lower threshold,
inside the data. It fails where per-probe tails are not exponential
(bounded scores bend the quantiles down, so it overestimates) or their
scale differs between probes. On fpscale's default ladder (3000 searches,
fit on 1k-2k, predicting 20k at thresholds where 20k measures FPIR 0.3,
0.1, 0.03, 0.01, both finger sets) it predicted 0.9-1.5 times the measured
FPIR, all 8 measured values inside its 95% interval; the gamma frailty
predicted 0.3-1.0 times (5 of 8 inside its interval for the same searches),
the independence fit 1.7-5.3 times (2 of 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from fpscale.bench.measure.fpir_model.ladder import (Estimate, Ladder, Options, decades_past_data,
                                                     resolved_estimate)
from fpscale.bench.measure.fpir_model.resampling import (CHUNK, bootstrap_weights, index_clusters,
                                                         percentile_interval)
from fpscale.bench.measure.weighted_quantile import upper_quantiles, weight_at_or_above

_SHIFT_LEVELS = 16            # FPIR levels whose quantiles the shift model regresses on ln N
_SHIFT_MIN_ABOVE = 20         # the smallest level has this many searches above it
_SHIFT_TOP = 0.5              # the largest level


@dataclass(frozen=True)
class ShiftFit:
    """Shift-model fit (see the module docstring).

    b: score the upper quantiles of per-search maxima gain per e-fold of
    gallery size (score units per unit of ln N); rungs (R,) fitted; levels
    (J,) FPIR levels whose quantiles were regressed on ln N, slopes (J,)
    their slopes (b is their mean); maxima (n,) best non-mate score of each
    search non-mated at every rung, at the largest rung; cluster_index (n,),
    n_clusters; boot_b (B,) replicate b; options (seed of the replicates)."""

    b: float
    rungs: np.ndarray
    levels: np.ndarray
    slopes: np.ndarray
    maxima: np.ndarray
    cluster_index: np.ndarray
    n_clusters: int
    boot_b: np.ndarray
    options: Options = field(default_factory=Options)

    @property
    def n_max(self) -> float:
        return float(self.rungs[-1])


def _slopes(maxima: np.ndarray, w: np.ndarray, logn: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Least-squares slope of each upper quantile on log N: (b, J), from
    maxima (n, R) at rungs exp(logn) (R,) and weights w (b, n)."""
    q = []
    w = np.ascontiguousarray(w, dtype=np.float64)     # once, not per rung: w[:, idx] comes strided
    for r in range(maxima.shape[1]):
        order = np.argsort(-maxima[:, r], kind="stable")
        q.append(upper_quantiles(maxima[:, r], order, w, levels))
    q = np.stack(q, axis=2)                                        # (b, J, R)
    xc = logn - logn.mean()
    return (q - q.mean(axis=2, keepdims=True)) @ xc / (xc @ xc)


def growth_scale(n, growth: str = "log") -> np.ndarray:
    """How the best of n impostor scores moves with n, up to scale: ln n
    for exponential per-probe tails (Gumbel domain), or the normal quantile
    exceeded once in n, Phi^-1(1 - 1/n), for Gaussian per-probe scores
    (sums of many features), whose maxima grow more slowly, about
    sqrt(2 ln n)."""
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) if growth == "log" else stats.norm.isf(1.0 / n)


def fit_shift(ladder: Ladder, options: Options = Options()) -> ShiftFit:
    """Fit the shift model: b, the score the upper quantiles of per-search
    maxima gain per e-fold of gallery size, from the searches non-mated at
    every rung, with options.n_boot replicates resampling searches (or
    clusters). Needs two rungs or more and more than 40 such searches."""
    R = len(ladder.rungs)
    if R < 2:
        raise ValueError("the shift model needs two rungs or more")
    keep = ladder.nonmated[:, -1]
    M = ladder.top_nonmate[keep]
    n = len(M)
    if n <= 2 * _SHIFT_MIN_ABOVE:
        raise ValueError(f"the shift model needs more than {2 * _SHIFT_MIN_ABOVE} non-mated searches")
    levels = np.geomspace(_SHIFT_MIN_ABOVE / n, _SHIFT_TOP, _SHIFT_LEVELS)
    logn = growth_scale(ladder.rungs, options.growth)
    slopes = _slopes(M, np.ones((1, n)), logn, levels)[0]
    cidx, g = index_clusters(None if ladder.cluster is None else ladder.cluster[keep], n)
    boot = np.concatenate([_slopes(M, w[:, cidx], logn, levels).mean(axis=1)
                           for w in bootstrap_weights(g, options.n_boot, options.seed)])
    return ShiftFit(b=float(slopes.mean()), rungs=ladder.rungs.copy(), levels=levels, slopes=slopes,
                    maxima=M[:, -1].copy(), cluster_index=cidx, n_clusters=g, boot_b=boot,
                    options=options)


def predict_shift(fit: ShiftFit, n: float, t: float, options: Options | None = None) -> Estimate:
    """FPIR(n, t) from the shift model: the share of searches whose best
    non-mate score at the largest fitted rung is >= t - b g(n) + b g(N_max)
    (g the growth scale), with a percentile interval over the fit's
    replicates (each its own b and resample). None past options.max_decades."""
    return predict_shift_many(fit, [n], t, options)[0]


def predict_shift_many(fit: ShiftFit, ns, t: float, options: Options | None = None) -> list[Estimate]:
    """predict_shift at several gallery sizes ns, drawing the replicates once."""
    options = options or fit.options
    ns = [float(n) for n in ns]
    g = fit.options.growth
    shifts = np.array([float(growth_scale(n, g) - growth_scale(fit.n_max, g)) for n in ns])
    reps = []
    # the maxima sorted once; each sorted position's weight column
    order = np.argsort(fit.maxima)
    ranked, col = fit.maxima[order], fit.cluster_index[order]
    per_cluster = np.bincount(fit.cluster_index, minlength=fit.n_clusters).astype(np.float64)
    # the fit's replicates again: same seed, same resamples, paired with boot_b
    for i, w in zip(range(0, len(fit.boot_b), CHUNK),
                    bootstrap_weights(fit.n_clusters, len(fit.boot_b), fit.options.seed)):
        total = w @ per_cluster                    # integer counts: exact in any order
        t_eq = t - fit.boot_b[i:i + len(w), None] * shifts[None, :]          # (b, k)
        # the share of each replicate's weight at or above each t_eq
        idx = np.searchsorted(ranked, t_eq, side="left")                    # first >= t_eq
        reps.append(weight_at_or_above(col, w, idx) / total[:, None])
    reps = np.concatenate(reps)                                              # (B, k)
    out = []
    for k, n in enumerate(ns):
        value = float((fit.maxima >= t - fit.b * shifts[k]).mean())
        lo, hi = percentile_interval(reps[:, k], options.level)
        dn = decades_past_data(n, 1.0, fit.n_max)
        df = decades_past_data(value if value > 0 else float(hi), 1.0 / len(fit.maxima), 1.0)
        out.append(resolved_estimate(value, (lo, hi), (dn, df),
                                     f"FPIR(N={n:g}, T={t:.6g}), shift model (b={fit.b:.4g})", options))
    return out
