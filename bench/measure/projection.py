"""From measured ladder rungs to a national-scale projection.

For each finger set (one finger, two index fingers, all searched fingers):

1. FMR(T), the chance that one comparison of two different people scores
   >= T, from the impostor histogram of every (search, non-mate) pair the
   ladder pass saw; beyond the data's reach, from a generalized Pareto tail
   (the peaks-over-threshold model of extreme value theory, fitted with
   scipy.stats.genpareto to the top exceedances, with a bootstrap interval).
2. Two models of FPIR(N, T): independence, 1 - (1 - FMR(T))^N, and an
   empirical fit FPIR = 1 - exp(-a N^b) per threshold (b = 1 is
   independence; b != 1 says the comparisons of one search are correlated).
3. Validation: both models fitted (or computed) without the largest rung
   predict it; the report says whether each prediction lies inside the
   measured 95% interval.
4. The target: FPIR at the national gallery size, and expected people per
   year falsely matched, S (1 - p) FPIR(N, T), plus mated searches whose top
   candidate above T is someone else, S p P(wrong), with intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from bench.measure.metrics import binomial_ci
from bench.scenario import TargetSpec

# a field left out of the JSON when it is None (dataclass field metadata)
OMIT_IF_NONE = {"omit_if_none": True}

STUDY_FPIR = (0.3, 0.1, 0.03)   # thresholds set where the largest rung measures these
TAIL_EXCEEDANCES = 2000          # peaks over threshold used for the tail fit
BOOTSTRAP = 60


@dataclass
class MeasuredFpir:
    """FPIR measured at one rung of the ladder, with its 95% interval."""

    n: int
    fpir: float | None
    ci95: list[float | None]
    count: int
    of: int


@dataclass
class Validation:
    """Each model's prediction of the largest rung, made without it."""

    independence_prediction: float
    independence_inside_ci: bool
    fitted_prediction: float | None = field(default=None, metadata=OMIT_IF_NONE)
    fitted_inside_ci: bool | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class PowerFit:
    """FPIR(N) = 1 - exp(-a N^b)."""

    a: float
    b: float


@dataclass
class Study:
    """One threshold: FPIR measured at every rung, both models, the target."""

    threshold: float
    fmr: float
    measured: list[MeasuredFpir]
    independence: list[float]
    fit: PowerFit | None
    validation: Validation
    target_fpir_independence: float
    target_fpir_fitted: float | None


@dataclass
class TailFit:
    """The generalized Pareto tail above u (FMR p_u there)."""

    u: float
    p_u: float
    gpd: list[float] | None
    bootstrap: int


@dataclass
class ThresholdSweep:
    """Per threshold at the target scale: FMR, FPIR, FNIR and people per year."""

    threshold: list[float]
    fmr: list[float | None]
    fpir: list[float | None]
    fnir_sim: list[float | None]
    false_matches_per_year: list[float | None]
    false_matches_per_year_ci95: list[list[float | None]]
    mated_wrong_per_year: list[float | None]


@dataclass
class TargetProjection:
    """The national target and what the models say there."""

    gallery_size: int
    searches_per_year: float
    mated_share: float
    sweep: ThresholdSweep
    threshold_under_one_per_year: float | None
    fnir_at_that_threshold: float | None


@dataclass
class FingerSetProjection:
    """The projection of one finger set (one, two_index or all)."""

    finger_set: str
    rungs: list[int]
    impostor_pairs: int
    tail: TailFit
    studies: list[Study]
    target: TargetProjection


def false_match_searches_per_year(target: TargetSpec, fpir: float) -> float:
    """Non-mated searches a year with a candidate above T: S (1 - p) FPIR."""
    return target.searches_per_year * (1 - target.mated_share) * fpir


def mated_wrong_searches_per_year(target: TargetSpec, p_wrong):
    """Mated searches a year whose top candidate above T is someone else: S p P(wrong)."""
    return target.searches_per_year * target.mated_share * p_wrong


def fpir_at_n(fmr: np.ndarray, n: float) -> np.ndarray:
    """Independence model 1 - (1 - FMR)^N, computed without cancellation."""
    fmr = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(n * np.log1p(-fmr))


def fit_power_model(n: np.ndarray, fpir: np.ndarray) -> tuple[float, float] | None:
    """Least-squares fit of log(-log(1 - FPIR)) = log a + b log N; None if
    fewer than two usable points (0 < FPIR < 1)."""
    ok = (fpir > 0) & (fpir < 1)
    if ok.sum() < 2:
        return None
    y = np.log(-np.log1p(-fpir[ok]))
    b, loga = np.polyfit(np.log(n[ok]), y, 1)
    return float(np.exp(loga)), float(b)


def power_model(a: float, b: float, n) -> np.ndarray:
    """FPIR(N) = 1 - exp(-a N^b) at the sizes n."""
    return -np.expm1(-a * np.power(np.asarray(n, dtype=np.float64), b))


class TailModel:
    """Empirical FMR(T) from an impostor histogram, with a GPD tail."""

    def __init__(self, hist: np.ndarray, edges: np.ndarray, seed: int = 0) -> None:
        self.edges = edges
        self.total = int(hist.sum())
        self.tail_counts = np.cumsum(hist[::-1])[::-1]  # pairs with score >= edges[i]
        # threshold u: the lowest edge with at most TAIL_EXCEEDANCES pairs above it
        k = int(np.argmax(self.tail_counts <= max(TAIL_EXCEEDANCES, 1)))
        self.u_index = k
        self.u = float(edges[k])
        self.p_u = self.tail_counts[k] / self.total if self.total else 0.0
        centres = (edges[k:-1] + edges[k + 1:]) / 2 - self.u
        self._exc_vals = centres
        self._exc_counts = hist[k:]
        self.params = self._fit(self._exc_counts)
        rng = np.random.default_rng(seed)
        n_exc = int(self._exc_counts.sum())
        boots = []
        if n_exc >= 30:
            probs = self._exc_counts / n_exc
            for _ in range(BOOTSTRAP):
                boots.append(self._fit(rng.multinomial(n_exc, probs)))
        self.boot = [b for b in boots if b is not None]

    def _fit(self, counts: np.ndarray):
        vals = np.repeat(self._exc_vals, counts)
        if len(vals) < 30:
            return None
        c, _, scale = stats.genpareto.fit(np.maximum(vals, 0.0), floc=0.0)
        return float(c), float(scale)

    def fmr_empirical(self, t: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.edges, t, side="left"), 0, len(self.tail_counts) - 1)
        return self.tail_counts[idx] / max(self.total, 1)

    def fmr(self, t, params=None) -> np.ndarray:
        """FMR(T): empirical below the tail threshold, GPD above it."""
        t = np.asarray(t, dtype=np.float64)
        params = params or self.params
        emp = self.fmr_empirical(t)
        if params is None:
            return emp
        c, scale = params
        tail = self.p_u * stats.genpareto.sf(np.maximum(t - self.u, 0.0), c, 0.0, scale)
        return np.where(t > self.u, tail, emp)

    def fmr_interval(self, t) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, dtype=np.float64)
        k = self.tail_counts[np.clip(np.searchsorted(self.edges, t), 0, len(self.tail_counts) - 1)]
        lo, hi = binomial_ci(k, self.total, "exact")
        if self.boot:
            sims = np.array([self.fmr(t, b) for b in self.boot])
            blo, bhi = np.percentile(sims, [2.5, 97.5], axis=0)
            lo = np.where(t > self.u, blo, lo)
            hi = np.where(t > self.u, bhi, hi)
        return lo, hi


def _measured(top: np.ndarray, mate: np.ndarray, rungs: np.ndarray, t: float) -> list[MeasuredFpir]:
    out = []
    for r, n in enumerate(rungs):
        nonmated = (mate < 0) | (mate >= n)
        k = int((top[nonmated, r] >= t).sum())
        m = int(nonmated.sum())
        lo, hi = binomial_ci(k, m)
        out.append(MeasuredFpir(int(n), k / m if m else float("nan"), [float(lo), float(hi)], k, m))
    return out


def project_finger_set(target: TargetSpec, st: dict, mate: np.ndarray, fset: str,
                       seed: int) -> FingerSetProjection:
    """The projection of one finger set from its ladder state (``LadderScan.state``)
    and the searches' mates (Q,); seed drives the tail bootstrap."""
    rungs = st["rungs"].astype(np.float64)
    top = st["top_nonmate"]
    tail = TailModel(st["impostor_hist"], st["hist_edges"], seed=seed)
    N = float(target.gallery_size)
    largest = top[(mate < 0) | (mate >= rungs[-1]), -1]

    # thresholds: where the largest rung measures the study FPIRs
    thresholds = sorted({float(np.quantile(largest, 1 - f)) for f in STUDY_FPIR if len(largest)})
    studies = []
    for t in thresholds:
        meas = _measured(top, mate, rungs, t)
        fp = np.array([m.fpir for m in meas])
        fmr = float(tail.fmr(t))
        indep = fpir_at_n(fmr, rungs)
        fit_small = fit_power_model(rungs[:-1], fp[:-1])
        fit_all = fit_power_model(rungs, fp)
        lo, hi = meas[-1].ci95
        val = Validation(float(indep[-1]), bool(lo <= indep[-1] <= hi))
        if fit_small is not None:
            pred = float(power_model(*fit_small, rungs[-1]))
            val.fitted_prediction, val.fitted_inside_ci = pred, bool(lo <= pred <= hi)
        studies.append(Study(t, fmr, meas, indep.tolist(),
                             None if fit_all is None else PowerFit(*fit_all), val,
                             float(fpir_at_n(fmr, N)),
                             float(power_model(*fit_all, N)) if fit_all is not None else None))

    # threshold sweep at the target scale: people per year
    hi_t = float(tail.edges[-1])
    lo_t = float(np.quantile(largest, 0.5)) if len(largest) else tail.u
    sweep = np.linspace(lo_t, hi_t, 120)
    fmr = tail.fmr(sweep)
    fmr_lo, fmr_hi = tail.fmr_interval(sweep)
    f_nm = fpir_at_n(fmr, N)
    mated_scores = _mate_scores(st, mate)
    wrong = np.array([_p_wrong(tail, mated_scores, t, N) for t in sweep])
    fnir_t = np.array([(mated_scores < t).mean() if len(mated_scores) else np.nan for t in sweep])
    people = false_match_searches_per_year(target, f_nm)
    people_lo = false_match_searches_per_year(target, fpir_at_n(fmr_lo, N))
    people_hi = false_match_searches_per_year(target, fpir_at_n(fmr_hi, N))
    mated_wrong = mated_wrong_searches_per_year(target, wrong)
    # the lowest threshold with under one false match per year
    under_one = np.flatnonzero(people + mated_wrong < 1.0)
    t1 = float(sweep[under_one[0]]) if len(under_one) else None
    sweep_out = ThresholdSweep(
        sweep.tolist(), fmr.tolist(), f_nm.tolist(), fnir_t.tolist(), people.tolist(),
        [people_lo.tolist(), people_hi.tolist()], mated_wrong.tolist())
    fnir_t1 = (float((mated_scores < t1).mean()) if t1 is not None and len(mated_scores)
               else None)
    return FingerSetProjection(
        fset, rungs.astype(int).tolist(), tail.total,
        TailFit(tail.u, tail.p_u, tail.params, len(tail.boot)), studies,
        TargetProjection(int(N), target.searches_per_year, target.mated_share, sweep_out, t1,
                         fnir_t1))


def _mate_scores(st: dict, mate: np.ndarray) -> np.ndarray:
    # mate scores of searches whose mate is inside the largest rung
    ms = st.get("mate_score")
    if ms is None:
        return np.array([])
    keep = (mate >= 0) & (mate < st["rungs"][-1])
    return ms[keep].astype(np.float64)


def _p_wrong(tail: TailModel, mate_scores: np.ndarray, t: float, n: float) -> float:
    # a mated search goes to the wrong person when some non-mate scores
    # >= T and above the mate: independence over the n - 1 non-mates
    if len(mate_scores) == 0:
        return 0.0
    bar = np.maximum(mate_scores, t)
    return float(fpir_at_n(tail.fmr(bar), n - 1).mean())


def project(target: TargetSpec, ladder_state: dict, mate: np.ndarray,
            seed: int) -> dict[str, FingerSetProjection]:
    """Projection for every finger set measured: ladder_state maps a finger
    set to its ``LadderScan.state()``; mate (Q,) as in the searches."""
    return {fs: project_finger_set(target, st, mate, fs, seed) for fs, st in ladder_state.items()}
