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

import numpy as np
from scipy import stats

from bench.metrics import binomial_ci
from bench.scenario import Scenario

STUDY_FPIR = (0.3, 0.1, 0.03)   # thresholds set where the largest rung measures these
TAIL_EXCEEDANCES = 2000          # peaks over threshold used for the tail fit
BOOTSTRAP = 60


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


def _measured(top: np.ndarray, mate: np.ndarray, rungs: np.ndarray, t: float):
    out = []
    for r, n in enumerate(rungs):
        nonmated = (mate < 0) | (mate >= n)
        k = int((top[nonmated, r] >= t).sum())
        m = int(nonmated.sum())
        lo, hi = binomial_ci(k, m)
        out.append({"n": int(n), "fpir": k / m if m else float("nan"), "ci95": [float(lo), float(hi)],
                    "count": k, "of": m})
    return out


def project_finger_set(sc: Scenario, st: dict, mate: np.ndarray, fset: str) -> dict:
    rungs = st["rungs"].astype(np.float64)
    top = st["top_nonmate"]
    tail = TailModel(st["impostor_hist"], st["hist_edges"], seed=sc.population.seed)
    N = float(sc.target.gallery_size)
    S = sc.target.searches_per_year
    p = sc.target.mated_share
    largest = top[(mate < 0) | (mate >= rungs[-1]), -1]

    # thresholds: where the largest rung measures the study FPIRs
    thresholds = sorted({float(np.quantile(largest, 1 - f)) for f in STUDY_FPIR if len(largest)})
    studies = []
    for t in thresholds:
        meas = _measured(top, mate, rungs, t)
        fp = np.array([m["fpir"] for m in meas])
        fmr = float(tail.fmr(t))
        indep = fpir_at_n(fmr, rungs)
        fit_small = fit_power_model(rungs[:-1], fp[:-1])
        fit_all = fit_power_model(rungs, fp)
        last = meas[-1]
        val = {
            "independence_prediction": float(indep[-1]),
            "independence_inside_ci": bool(last["ci95"][0] <= indep[-1] <= last["ci95"][1]),
        }
        if fit_small is not None:
            pred = float(power_model(*fit_small, rungs[-1]))
            val.update({"fitted_prediction": pred,
                        "fitted_inside_ci": bool(last["ci95"][0] <= pred <= last["ci95"][1])})
        studies.append({"threshold": t, "fmr": fmr, "measured": meas,
                        "independence": indep.tolist(),
                        "fit": None if fit_all is None else {"a": fit_all[0], "b": fit_all[1]},
                        "validation": val,
                        "target_fpir_independence": float(fpir_at_n(fmr, N)),
                        "target_fpir_fitted": (float(power_model(*fit_all, N))
                                               if fit_all is not None else None)})

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
    people = S * (1 - p) * f_nm
    people_lo = S * (1 - p) * fpir_at_n(fmr_lo, N)
    people_hi = S * (1 - p) * fpir_at_n(fmr_hi, N)
    # the lowest threshold with under one false match per year
    under_one = np.flatnonzero(people + S * p * wrong < 1.0)
    t1 = float(sweep[under_one[0]]) if len(under_one) else None
    return {
        "finger_set": fset, "rungs": rungs.astype(int).tolist(),
        "impostor_pairs": tail.total, "tail": {"u": tail.u, "p_u": tail.p_u,
                                               "gpd": tail.params, "bootstrap": len(tail.boot)},
        "studies": studies,
        "target": {
            "gallery_size": int(N), "searches_per_year": S, "mated_share": p,
            "sweep": {"threshold": sweep.tolist(), "fmr": fmr.tolist(), "fpir": f_nm.tolist(),
                      "fnir_sim": fnir_t.tolist(),
                      "false_matches_per_year": people.tolist(),
                      "false_matches_per_year_ci95": [people_lo.tolist(), people_hi.tolist()],
                      "mated_wrong_per_year": (S * p * wrong).tolist()},
            "threshold_under_one_per_year": t1,
            "fnir_at_that_threshold": (float((mated_scores < t1).mean())
                                       if t1 is not None and len(mated_scores) else None),
        },
    }


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


def project(sc: Scenario, ladder_state: dict, mate: np.ndarray) -> dict:
    """Projection for every finger set measured."""
    return {fs: project_finger_set(sc, st, mate, fs) for fs, st in ladder_state.items()}


def reproject(folder, gallery_size: int | None = None, searches_per_year: float | None = None,
              mated_share: float | None = None) -> tuple[dict, dict]:
    """Projection from a finished results folder to another target.

    Returns (target used, projection per finger set); the ladder files hold
    everything needed, so nothing is searched again."""
    import dataclasses
    import json
    from pathlib import Path

    from bench.results import ResultsError, read_npz
    from bench.scenario import TargetSpec, scenario_from_dict

    folder = Path(folder)
    p = folder / "summary.json"
    if not p.is_file():
        raise ResultsError(f"{folder} holds no summary.json: run a scenario into it first")
    d = json.loads(p.read_text())["scenario"]
    t = d["target"]
    for key, v in (("gallery_size", gallery_size), ("searches_per_year", searches_per_year),
                   ("mated_share", mated_share)):
        if v is not None:
            t[key] = v
    sc = scenario_from_dict(d, d["name"])
    files = sorted(folder.glob("ladder_*.npz"))
    if not files:
        raise ResultsError(f"{folder} has no ladder files: the scenario has no [projection] ladder")
    state = {}
    mate = None
    for f in files:
        st = read_npz(f)
        mate = st.pop("mate")
        state[f.stem.removeprefix("ladder_")] = st
    return dataclasses.asdict(sc.target) if isinstance(sc.target, TargetSpec) else t, project(sc, state, mate)
