"""The numba walk behind the shift model's resampled slopes against a plain
numpy reference: the cumulated weight in sorted order, searched per row."""

import numpy as np

from fpscale.bench.measure.weighted_quantile import upper_quantiles, weight_at_or_above


def reference(x, w, levels):
    order = np.argsort(-x, kind="stable")
    cum = np.cumsum(w[:, order], axis=1)
    out = np.empty((len(w), len(levels)))
    for i in range(len(w)):
        need = levels * cum[i, -1] - 1e-9
        idx = np.searchsorted(cum[i], need, side="left")
        out[i] = x[order][np.minimum(idx, len(x) - 1)]
    return out


def test_upper_quantiles_match_the_numpy_reference():
    rng = np.random.default_rng(5)
    x = rng.gumbel(size=3000)
    x[::7] = x[3]                                   # ties, taken in the stable order
    levels = np.geomspace(20 / len(x), 0.5, 16)
    # bootstrap counts (integers, some zero) and a strided view, as callers pass them
    w = rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=64).astype(np.float64)
    strided = np.asfortranarray(w)
    order = np.argsort(-x, kind="stable")
    got = upper_quantiles(x, order, strided, levels)
    assert np.array_equal(got, reference(x, w, levels))
    # unit weights: the plain upper quantile, the 20th largest value first
    one = upper_quantiles(x, order, np.ones((1, len(x))), levels)[0]
    assert one[0] == np.sort(x)[::-1][19]
    assert np.all(np.diff(one) <= 0)
    # all the weight on the smallest value: every level is reached only there
    last = np.zeros((1, len(x)))
    last[0, order[-1]] = 3.0
    assert np.all(upper_quantiles(x, order, last, levels) == x.min())


def reference_at_or_above(maxima, cluster_index, w, t_eq):
    # the reversed cumulative sum the shift model's predictions first used
    ws = w[:, cluster_index]
    order = np.argsort(maxima)
    cum = np.cumsum(ws[:, order[::-1]], axis=1)[:, ::-1]
    idx = np.searchsorted(maxima[order], t_eq, side="left")
    return np.where(idx < len(order), np.take_along_axis(
        np.concatenate([cum, np.zeros((len(w), 1))], axis=1), idx, axis=1), 0.0), order, idx


def test_weight_at_or_above_matches_the_numpy_reference():
    rng = np.random.default_rng(8)
    n, g = 2000, 700
    maxima = np.round(rng.normal(size=n), 2)           # many ties
    cluster = rng.integers(0, g, size=n)                # searches grouped in clusters
    w = rng.multinomial(g, np.full(g, 1 / g), size=40).astype(np.float64)
    # thresholds below, inside and above the sample, a different set per row
    t_eq = rng.normal(scale=2.0, size=(40, 9))
    t_eq[:, 0], t_eq[:, 1] = maxima.min() - 1, maxima.max() + 1
    want, order, idx = reference_at_or_above(maxima, cluster, w, t_eq)
    got = weight_at_or_above(cluster[order], w, idx)
    assert np.array_equal(got, want)
    assert np.all(got[:, 1] == 0) and np.all(got[:, 0] == w @ np.bincount(cluster, minlength=g))
