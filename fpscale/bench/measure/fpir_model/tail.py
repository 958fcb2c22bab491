"""FPIR(T) below the data's reach at one gallery size: a generalized Pareto
tail of the per-search maxima.

At a fixed N, FPIR(N, T) = P(M >= T) where M is a search's best non-mate
score. Below the data's reach (FPIR < 1 / searches) it comes from a
generalized Pareto tail (peaks over threshold) fitted to the largest
``tail_fraction`` of the per-search maxima: FPIR(T) = (n_u / n) GPD_sf(T - u).
The GPD is fitted by probability-weighted moments (Hosking and Wallis 1987):
closed form, so every bootstrap replicate is refitted exactly and in one
vectorised pass; for shapes xi < 0.5, as scores have, it is about as
efficient as maximum likelihood and steadier on a few hundred exceedances.
The tail threshold u is re-chosen in every replicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from fpscale.bench.measure.fpir_model.ladder import (Estimate, Options, decades_past_data,
                                                     resolved_estimate)
from fpscale.bench.measure.fpir_model.resampling import (bootstrap_weights, index_clusters,
                                                         percentile_interval)


@dataclass(frozen=True)
class TailFit:
    """GPD tail of per-search maxima at one gallery size.

    u: tail threshold (score); xi, sigma: GPD shape and scale (score units);
    n: searches; n_exceed: maxima above u; boot_u, boot_xi, boot_sigma,
    boot_frac: (B,) replicate threshold, parameters and share above u;
    sorted_max: (n,) the maxima, descending; cluster_index: (n,) cluster of
    each sorted maximum; n_clusters; options (seed of the replicates)."""

    u: float
    xi: float
    sigma: float
    n: int
    n_exceed: int
    boot_u: np.ndarray
    boot_xi: np.ndarray
    boot_sigma: np.ndarray
    boot_frac: np.ndarray
    sorted_max: np.ndarray
    cluster_index: np.ndarray
    n_clusters: int
    options: Options = field(default_factory=Options)


def _pwm_weighted(x: np.ndarray, w: np.ndarray, frac: float, min_exc: int):
    """GPD by probability-weighted moments for many weighted samples.

    x: (n,) values sorted descending; w: (B, n) integer weights. For each
    row the threshold u is the (m+1)-th largest value, m = ceil(frac *
    total weight) (at least min_exc). Returns u, xi, sigma, share above u,
    each (B,)."""
    tot = w.sum(axis=1)
    m = np.maximum(np.ceil(frac * tot), min_exc)
    m = np.minimum(m, tot - 1)
    # only the top of the sample matters: cut the columns once every row's
    # top m + 1 copies lie inside them
    k = min(len(x), int(1.5 * m.max()) + 64)
    while True:
        cum = np.cumsum(w[:, :k], axis=1)
        if k == len(x) or (cum[:, -1] > m).all():
            break
        k = min(len(x), 2 * k)
    x, w = x[:k], w[:, :k]
    inc = np.clip(m[:, None] - (cum - w), 0, w)              # copies of x_i among the top m
    iu = np.argmax(cum > m[:, None], axis=1)                  # first index past the top m
    u = x[iu]
    y = np.maximum(x[None, :] - u[:, None], 0.0)
    cinc = np.cumsum(inc, axis=1)
    # ascending ranks of the copies of x_i run from m - cinc + 1 to m - cinc + inc
    rank_sum = inc * (m[:, None] - cinc) + inc * (inc + 1) / 2
    a0 = (inc * y).sum(axis=1) / m
    a1 = ((inc * (1 + 0.35 / m[:, None]) - rank_sum / m[:, None]) * y).sum(axis=1) / m
    den = a0 - 2 * a1
    with np.errstate(invalid="ignore", divide="ignore"):
        xi = 2 - a0 / den
        sigma = 2 * a0 * a1 / den
    return u, xi, sigma, m / tot


def fit_tail(maxima: np.ndarray, cluster: np.ndarray | None = None,
             options: Options = Options()) -> TailFit:
    """GPD tail of per-search best non-mate scores (n,) at one gallery size,
    refitted in options.n_boot replicates resampling searches (or clusters,
    cluster (n,) person ids)."""
    x = np.asarray(maxima, dtype=np.float64).ravel()
    if cluster is not None and len(np.asarray(cluster).ravel()) != len(x):
        raise ValueError("cluster must have one entry per maximum")
    order = np.argsort(-x, kind="stable")
    xs = x[order]
    cidx, g = index_clusters(None if cluster is None else np.asarray(cluster).ravel()[order], len(x))
    if len(x) * options.tail_fraction < options.min_exceedances:
        raise ValueError(f"{len(x)} maxima give fewer than {options.min_exceedances} exceedances "
                         f"at tail_fraction {options.tail_fraction}")
    one = np.ones((1, len(x)))
    u, xi, sg, fr = _pwm_weighted(xs, one, options.tail_fraction, options.min_exceedances)
    bu, bx, bs, bf = [], [], [], []
    for w in bootstrap_weights(g, options.n_boot, options.seed):
        r = _pwm_weighted(xs, w[:, cidx], options.tail_fraction, options.min_exceedances)
        bu.append(r[0]), bx.append(r[1]), bs.append(r[2]), bf.append(r[3])
    return TailFit(u=float(u[0]), xi=float(xi[0]), sigma=float(sg[0]), n=len(x),
                   n_exceed=int(round(fr[0] * len(x))), boot_u=np.concatenate(bu),
                   boot_xi=np.concatenate(bx), boot_sigma=np.concatenate(bs),
                   boot_frac=np.concatenate(bf), sorted_max=xs, cluster_index=cidx,
                   n_clusters=g, options=options)


def _gpd_sf(y, xi, sigma) -> np.ndarray:
    """GPD survival function at excesses y >= 0 (arrays broadcast)."""
    y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
    return stats.genpareto.sf(y, xi, 0.0, sigma)


def _gpd_isf(p, xi, sigma) -> np.ndarray:
    """GPD excess exceeded with probability p (arrays broadcast)."""
    return stats.genpareto.isf(p, xi, 0.0, sigma)


def tail_fpir(tail: TailFit, t: float, options: Options | None = None) -> Estimate:
    """FPIR(T) at the tail fit's gallery size: the empirical share of maxima
    >= t when t <= u, the GPD tail above u; percentile interval over the
    fit's replicates (each with its own u). None past options.max_decades
    below 1 / searches."""
    options = options or tail.options
    xs = tail.sorted_max
    if t <= tail.u:
        value = float((xs >= t).mean())
    else:
        value = float(tail.n_exceed / tail.n * _gpd_sf(t - tail.u, tail.xi, tail.sigma))
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = tail.boot_frac * _gpd_sf(t - tail.boot_u, tail.boot_xi, tail.boot_sigma)
    if (t <= tail.boot_u).any():
        # replicates whose threshold lies above t: the empirical share
        hit = (xs >= t).astype(np.float64)
        emp = []
        for w in bootstrap_weights(tail.n_clusters, len(reps), tail.options.seed):
            ws = w[:, tail.cluster_index]
            emp.append((ws @ hit) / ws.sum(axis=1))
        emp = np.concatenate(emp)
        reps = np.where(t <= tail.boot_u, emp, reps)
    lo, hi = percentile_interval(reps, options.level)
    # above the fitted tail's upper end point the estimate is 0: its
    # distance from the data is then that of the interval's upper end
    df = decades_past_data(value if value > 0 else float(hi), 1.0 / tail.n, 1.0)
    return resolved_estimate(value, (lo, hi), (0.0, df), f"FPIR(T={t:.6g}) from the per-search maxima",
                             options)


def tail_threshold(tail: TailFit, fpir: float, options: Options | None = None) -> Estimate:
    """The threshold T (score units) at which FPIR(T) = fpir at the tail
    fit's gallery size, with a percentile interval over the replicates;
    empirical quantile above the tail share, GPD below it. None past
    options.max_decades below 1 / searches."""
    options = options or tail.options
    xs = tail.sorted_max
    frac = tail.n_exceed / tail.n
    if fpir >= frac:
        value = float(np.quantile(xs, 1 - fpir))
    else:
        value = float(tail.u + _gpd_isf(fpir / frac, tail.xi, tail.sigma))
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = tail.boot_u + _gpd_isf(np.minimum(fpir / tail.boot_frac, 1.0), tail.boot_xi, tail.boot_sigma)
    if (fpir >= tail.boot_frac).any():
        # replicates whose tail share is below fpir: the empirical quantile,
        # the largest x with a share >= fpir at or above it
        emp = []
        for w in bootstrap_weights(tail.n_clusters, len(reps), tail.options.seed):
            ws = w[:, tail.cluster_index]
            cum = np.cumsum(ws, axis=1) / ws.sum(axis=1, keepdims=True)
            emp.append(xs[np.minimum(np.argmax(cum >= fpir, axis=1), len(xs) - 1)])
        reps = np.where(fpir >= tail.boot_frac, np.concatenate(emp), reps)
    lo, hi = percentile_interval(reps, options.level)
    df = decades_past_data(fpir, 1.0 / tail.n, 1.0)
    return resolved_estimate(value, (lo, hi), (0.0, df), f"threshold with FPIR {fpir:g}", options)
