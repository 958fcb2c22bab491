"""NIST 1:N identification metrics (ISO/IEC 19795-1 usage, docs/design.md).

Inputs are the per-search candidate lists: ``ids`` (Q, L) int64 and
``scores`` (Q, L) float, best first, padded with -1 / -inf, and ``mate``
(Q,) the enrolled identity of each search or -1 for a non-mated search.
A candidate counts at threshold T when its score >= T.

- FNIR(N, R, T): share of mated searches whose mate is not within rank R or
  scores below T.
- FPIR(N, T): share of non-mated searches whose best candidate scores >= T.
- SEL(N, T): mean number of candidates scoring >= T per non-mated search.
- CMC(r) = 1 - FNIR(N, r, -inf).
Every rate comes with a 95% confidence interval (Wilson by default,
Clopper-Pearson on request), from scipy.stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from fpscale.bench.scenario import MetricsSpec


@dataclass
class Rate:
    """A proportion count/of with its 95% interval (value None when of = 0)."""

    value: float | None
    ci95: list[float | None]
    count: int
    of: int


@dataclass
class OperatingPoint:
    """The threshold reaching one FPIR target and the rates there."""

    target_fpir: float
    threshold: float | None
    resolved: bool
    fnir: Rate | None = None
    fpir: Rate | None = None
    sel: float | None = None


@dataclass
class Det:
    """FNIR and FPIR over a threshold sweep."""

    threshold: list[float]
    fnir: list[float]
    fpir: list[float]


@dataclass
class MetricsSummary:
    """Every metric of one backend's searches."""

    searches: int
    mated: int
    nonmated: int
    rank1_hit_rate: Rate
    fnir_no_threshold: Rate
    cmc: list[float | None]
    det: Det
    operating_points: list[OperatingPoint] = field(default_factory=list)


def mate_rank(ids: np.ndarray, mate: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank (Q,) 1-based or 0 when the mate is not listed, score (Q,) or -inf)."""
    rank = list_rank(ids, mate)
    pos = np.maximum(rank - 1, 0)
    score = np.where(rank > 0, scores[np.arange(len(ids)), pos], -np.inf)
    return rank, score.astype(np.float64)


def list_rank(ids: np.ndarray, mate: np.ndarray) -> np.ndarray:
    """The mate's rank in each list ids (Q, L): (Q,) int64, 1-based, 0 when
    not listed or not mated (mate -1)."""
    hit = (ids == mate[:, None]) & (mate[:, None] >= 0)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0).astype(np.int64)


def binomial_ci(k, n, method: str = "wilson", level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided CI of a proportion k/n; arrays broadcast. method: wilson | exact.

    Vectorised forms of what scipy.stats.binomtest(...).proportion_ci gives
    (exact = Clopper-Pearson from scipy.stats.beta), so that a threshold
    sweep of hundreds of points needs no Python loop. n = 0 gives nan.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "exact":
            a = (1 - level) / 2
            lo = np.where(k > 0, stats.beta.ppf(a, k, n - k + 1), 0.0)
            hi = np.where(k < n, stats.beta.ppf(1 - a, k + 1, n - k), 1.0)
        elif method == "wilson":
            z = stats.norm.ppf(1 - (1 - level) / 2)
            p = k / n
            den = 1 + z * z / n
            mid = (p + z * z / (2 * n)) / den
            half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
            lo, hi = np.clip(mid - half, 0, 1), np.clip(mid + half, 0, 1)
        else:
            raise ValueError(f"method must be 'wilson' or 'exact', got {method!r}")
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def rate_of(k: int, n: int, method: str = "wilson") -> Rate:
    """The proportion k/n as a Rate with its 95% interval (``binomial_ci``)."""
    lo, hi = binomial_ci(k, n, method)
    return Rate(float(k / n) if n else float("nan"), [float(lo), float(hi)], int(k), int(n))


def fnir(rank: np.ndarray, mate_score: np.ndarray, mated: np.ndarray, R: int, T: float) -> Rate:
    """FNIR(N, R, T) with CI over the mated searches."""
    r, s = rank[mated], mate_score[mated]
    miss = (r == 0) | (r > R) | (s < T)
    return rate_of(int(miss.sum()), int(mated.sum()))


def fpir(top_score: np.ndarray, nonmated: np.ndarray, T: float) -> Rate:
    """FPIR(N, T) with CI over the non-mated searches (their best score only)."""
    return rate_of(int((top_score[nonmated] >= T).sum()), int(nonmated.sum()))


def sel(scores: np.ndarray, nonmated: np.ndarray, T: float) -> float:
    """SEL(N, T): mean number of candidates >= T per non-mated search."""
    if not nonmated.any():
        return float("nan")
    return float((scores[nonmated].astype(np.float64) >= T).sum(axis=1).mean())


def cmc(rank: np.ndarray, mated: np.ndarray, L: int) -> np.ndarray:
    """Rank-r hit rate for r = 1..L, (L,)."""
    r = rank[mated]
    if len(r) == 0:
        return np.full(L, np.nan)
    counts = np.bincount(r[r > 0], minlength=L + 1)[1:L + 1]
    return np.cumsum(counts) / len(r)


def threshold_for_fpir(top_score: np.ndarray, nonmated: np.ndarray, target: float) -> OperatingPoint:
    """Lowest threshold whose FPIR <= target, and whether the data resolve it.

    With n non-mated searches an FPIR below 1/n cannot be told from zero:
    ``resolved`` is False then, and the threshold is the one just above the
    highest non-mated score (an upper bound on what the target needs).
    """
    s = np.sort(top_score[nonmated])[::-1]
    n = len(s)
    if n == 0:
        return OperatingPoint(target, float("nan"), False)
    allowed = int(np.floor(target * n))
    # the next value up in the scores' own dtype, so that the threshold
    # compares the same way when the table is re-read outside fpscale
    t = float(np.nextafter(s[allowed], s.dtype.type(np.inf))) if allowed < n else float(s[-1])
    # scores equal to s[allowed] are excluded; one more tie could sit above
    return OperatingPoint(target, t, bool(target * n >= 1.0))


def det_curve(top_score: np.ndarray, mate_score: np.ndarray, rank: np.ndarray,
              mated: np.ndarray, n_points: int = 200) -> Det:
    """FNIR (any rank in the list, as NIST's DET) and FPIR over a threshold sweep."""
    cand = np.concatenate([top_score[~mated], mate_score[mated & (rank > 0)]])
    cand = cand[np.isfinite(cand)]
    if len(cand) == 0:
        return Det([], [], [])
    thr = np.unique(np.quantile(cand, np.linspace(0, 1, n_points)))
    nm = np.sort(top_score[~mated])
    ms = np.sort(np.where(rank[mated] > 0, mate_score[mated], -np.inf))
    fp = (len(nm) - np.searchsorted(nm, thr, side="left")) / max(len(nm), 1)
    fn = np.searchsorted(ms, thr, side="left") / max(len(ms), 1)
    return Det(thr.tolist(), fn.tolist(), fp.tolist())


def summarize(ids: np.ndarray, scores: np.ndarray, mate: np.ndarray,
              spec: MetricsSpec) -> MetricsSummary:
    """All metrics of one backend's searches: ids, scores (Q, L), mate (Q,);
    spec gives R (rank), the FPIR targets and the DET's number of points."""
    mated = mate >= 0
    nonmated = ~mated
    rank, mscore = mate_rank(ids, mate, scores)
    top = scores[:, 0]
    L = ids.shape[1]
    out = MetricsSummary(
        int(len(mate)), int(mated.sum()), int(nonmated.sum()),
        rate_of(int(((rank == 1) & mated).sum()), int(mated.sum())),
        fnir(rank, mscore, mated, spec.rank, -np.inf),
        cmc(rank, mated, L).tolist(),
        det_curve(top, mscore, rank, mated, spec.thresholds))
    for target in spec.target_fpir:
        op = threshold_for_fpir(top, nonmated, target)
        T = op.threshold
        op.fnir, op.fpir, op.sel = (fnir(rank, mscore, mated, spec.rank, T), fpir(top, nonmated, T),
                                    sel(scores, nonmated, T))
        out.operating_points.append(op)
    return out
