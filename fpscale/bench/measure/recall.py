"""How much of the exact candidate lists an approximate backend returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Recall:
    """An approximate backend's lists against the exact float backend's."""

    recall_at_L: float
    rank1_agreement: float
    L: int


@dataclass
class FrontierPoint:
    """One search setting of a backend: recall@L against exact search with
    its 95% interval, and searches per second."""

    label: str
    recall: float
    ci95: tuple[float, float]
    searches_per_s: float
    pareto: bool = False


def recall_against(exact: tuple[np.ndarray, np.ndarray],
                   approx: tuple[np.ndarray, np.ndarray]) -> Recall:
    """recall@L (faiss.contrib's intersection measure) and rank-1 agreement
    of approximate lists against exact ones; each is (ids (Q, L), scores)."""
    from faiss.contrib.evaluation import knn_intersection_measure
    ei, ai = exact[0], approx[0]
    return Recall(float(knn_intersection_measure(ai, ei)), float(np.mean(ei[:, 0] == ai[:, 0])),
                  int(ei.shape[1]))


def search_recall(exact_ids: np.ndarray, approx_ids: np.ndarray) -> np.ndarray:
    """Per search, the share of the exact list's candidates that the
    approximate list holds: ids (Q, L) each, -1 padding ignored; (Q,)
    float64. Its mean is recall@L (faiss.contrib's intersection measure
    when no list is padded)."""
    e = np.where(exact_ids < 0, -2, exact_ids)
    a = np.where(approx_ids < 0, -3, approx_ids)  # padding never meets padding
    both = np.sort(np.concatenate([e, a], axis=1), axis=1)
    # a list holds each id once, so an id seen twice in a row is in both lists
    shared = ((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)).sum(axis=1)
    listed = (exact_ids >= 0).sum(axis=1)
    return shared / np.maximum(listed, 1)


def bootstrap_mean_ci(values: np.ndarray, level: float = 0.95, resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of values (one per search).

    Resampling the searches with replacement is drawing how often each
    distinct value occurs from a multinomial, which is what this does: per-
    search recall takes few distinct values (k/L), so the cost does not grow
    with the number of searches. Values all equal give a zero-width interval.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    distinct, counts = np.unique(values, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(values), counts / len(values), size=resamples)
    means = draws @ distinct / len(values)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def pareto_front(recall: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """(n,) bool: the settings no other beats on both recall and speed (at
    least as good on both, better on one), as ann-benchmarks draws them."""
    r, s = np.asarray(recall, dtype=float), np.asarray(speed, dtype=float)
    ge = (r[None, :] >= r[:, None]) & (s[None, :] >= s[:, None])
    gt = (r[None, :] > r[:, None]) | (s[None, :] > s[:, None])
    return ~(ge & gt).any(axis=1)
