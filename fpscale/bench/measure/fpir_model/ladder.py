"""The ladder's data, the fits' options, a projected figure and what the
ladder measures directly.

Words as in docs/design.md: a non-mated search returns a false positive at
threshold T when its best non-mate score over the N gallery records is >= T;
FPIR(N, T) is the share of non-mated searches that do.

Data
----
A ladder pass gives, per search q and rung r (gallery prefixes [0, N_r),
N increasing), ``top_nonmate[q, r]``, the best non-mate score in the prefix
(a running maximum over rungs), and ``mate[q]``, the gallery id of the
search's mate or -1. A search whose mate id is >= N_r is non-mated at rung
r; one whose mate lies inside the prefix is mated there. The models in N
take a :class:`Ladder`; the tail in T takes one rung's maxima.

Distance from the data
----------------------
Every figure is an :class:`Estimate` that says how many decades past the
data it is: in N, log10(N / largest rung fitted); in FPIR, log10((1/n) /
FPIR) with n the searches measured (1/n being the smallest non-zero FPIR
they can show). Past ``max_decades`` (default 1, the distance the held-out
validation checks: fit on rungs up to N, predict 10 N) the value is None
and ``reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fpscale.bench.measure.fpir_model.resampling import (bootstrap_weights, index_clusters,
                                                         percentile_interval)
from fpscale.bench.measure.metrics import binomial_ci


@dataclass(frozen=True)
class Ladder:
    """Ladder data for one finger set.

    rungs: (R,) increasing gallery sizes N_r; top_nonmate: (Q, R) best
    non-mate score among gallery ids [0, N_r); mate: (Q,) gallery id of the
    search's mate or -1; cluster: optional (Q,) person id of each search, so
    that intervals resample persons rather than searches; nested: each
    rung's best non-mate is a maximum over a superset of the last rung's
    (a first-stage scan; a re-scored pipeline's is not, since its list at a
    larger rung may drop a candidate), and is made a running maximum."""

    rungs: np.ndarray
    top_nonmate: np.ndarray
    mate: np.ndarray
    cluster: np.ndarray | None = None
    nested: bool = True

    def __post_init__(self) -> None:
        rungs = np.asarray(self.rungs, dtype=np.float64).ravel()
        top = np.asarray(self.top_nonmate, dtype=np.float64)
        mate = np.asarray(self.mate, dtype=np.int64).ravel()
        if top.ndim != 2 or top.shape != (len(mate), len(rungs)):
            raise ValueError(f"top_nonmate must be (Q, R) = ({len(mate)}, {len(rungs)}), "
                             f"got {top.shape}")
        if len(rungs) == 0 or np.any(np.diff(rungs) <= 0) or rungs[0] <= 0:
            raise ValueError("rungs must be positive and increasing")
        object.__setattr__(self, "rungs", rungs)
        # a running maximum over nested rungs, whatever the caller passed
        object.__setattr__(self, "top_nonmate", np.maximum.accumulate(top, axis=1)
                           if self.nested else top)
        object.__setattr__(self, "mate", mate)
        if self.cluster is not None:
            cl = np.asarray(self.cluster).ravel()
            if len(cl) != len(mate):
                raise ValueError("cluster must have one entry per search")
            object.__setattr__(self, "cluster", cl)

    @property
    def nonmated(self) -> np.ndarray:
        """(Q, R) bool: search q is non-mated at rung r (mate < 0 or mate >= N_r)."""
        return (self.mate[:, None] < 0) | (self.mate[:, None] >= self.rungs[None, :])

    def upto(self, n_max: float) -> Ladder:
        """The ladder cut to rungs N_r <= n_max (same searches)."""
        keep = self.rungs <= n_max
        if not keep.any():
            raise ValueError(f"no rung <= {n_max}")
        return replace(self, rungs=self.rungs[keep], top_nonmate=self.top_nonmate[:, keep])

    def rung_index(self, n: float) -> int:
        """Index of the rung of size n (ValueError if n is not a rung)."""
        i = np.flatnonzero(self.rungs == n)
        if len(i) != 1:
            raise ValueError(f"{n} is not a rung of {self.rungs.astype(int).tolist()}")
        return int(i[0])


@dataclass(frozen=True)
class Options:
    """Settings shared by the fits.

    n_boot: bootstrap replicates; level: interval coverage; seed: of the
    numpy Generator; max_decades: how far past the data (in N or in FPIR) a
    figure may be before it is 'not resolved'; tau_max: upper bound on the
    frailty variance 1/k (0 fits the independence model); mated: 'censor'
    or 'exclude' searches mated at some rung; tail_fraction: share of
    per-search maxima above the GPD threshold; min_exceedances: fewest
    exceedances a tail fit accepts; model: what validate fits, 'frailty',
    'independence' (the frailty fit with tau = 0) or 'shift'."""

    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    max_decades: float = 1.0
    tau_max: float = 1e4
    mated: str = "censor"
    tail_fraction: float = 0.1
    min_exceedances: int = 30
    model: str = "frailty"
    growth: str = "log"

    def __post_init__(self) -> None:
        if self.growth not in ("log", "normal"):
            raise ValueError(f"growth must be 'log' or 'normal', got {self.growth!r}")
        if self.model not in ("frailty", "independence", "shift"):
            raise ValueError(f"model must be 'frailty', 'independence' or 'shift', got {self.model!r}")
        if self.mated not in ("censor", "exclude"):
            raise ValueError(f"mated must be 'censor' or 'exclude', got {self.mated!r}")
        if not 0 < self.level < 1 or self.n_boot < 1 or self.tau_max < 0:
            raise ValueError("need 0 < level < 1, n_boot >= 1, tau_max >= 0")
        if not 0 < self.tail_fraction < 1:
            raise ValueError("tail_fraction must lie in (0, 1)")


@dataclass(frozen=True)
class Estimate:
    """One projected figure with its interval.

    value, lo, hi: the estimate and its interval at ``level`` (None when not
    resolved); decades_n, decades_fpir: decades past the data in gallery
    size and in FPIR (0 inside it); reason: why it is not resolved ('' when
    it is); what: a label saying what the figure is."""

    value: float | None
    lo: float | None
    hi: float | None
    decades_n: float
    decades_fpir: float
    reason: str = ""
    what: str = ""
    level: float = 0.95

    @property
    def resolved(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class MeasuredFPIR:
    """Measured FPIR per rung: n (R,), count (R,) searches >= T, of (R,)
    non-mated searches, fpir (R,), lo/hi (R,) interval (Wilson, or a
    cluster bootstrap when the ladder has clusters)."""

    n: np.ndarray
    count: np.ndarray
    of: np.ndarray
    fpir: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def decades_past_data(target: float, lo: float, hi: float) -> float:
    """Decades (log10 units) that target lies outside [lo, hi]; 0 inside.

    For a gallery size, [lo, hi] = [1, largest rung]; for an FPIR,
    [1 / searches, 1]. A target <= 0 is infinitely far."""
    if not target > 0:
        return float("inf")
    if target > hi:
        return float(np.log10(target / hi))
    if target < lo:
        return float(np.log10(lo / target))
    return 0.0


def resolved_estimate(value: float, bounds: tuple[float, float], decades: tuple[float, float],
                      what: str, options: Options) -> Estimate:
    """The Estimate with interval bounds (lo, hi), or None plus the reason
    where decades = (past the data in N, in FPIR) exceed options.max_decades."""
    (lo, hi), (dn, df) = bounds, decades
    lim = options.max_decades + 1e-9
    reason = ""
    if dn > lim:
        reason = (f"not resolved: {dn:.1f} decades past the largest gallery measured "
                  f"(limit {options.max_decades:g})")
    elif df > lim:
        reason = (f"not resolved: {df:.1f} decades below the smallest FPIR the searches can show "
                  f"(limit {options.max_decades:g})")
    if reason:
        return Estimate(None, None, None, dn, df, reason, what, options.level)
    return Estimate(float(value), float(lo), float(hi), dn, df, "", what, options.level)


def threshold_at_fpir(ladder: Ladder, fpir: float, n: float | None = None) -> float:
    """The threshold at which rung n (default the largest) measures FPIR
    `fpir`: the (1 - fpir) quantile of the non-mated searches' best
    non-mate scores there."""
    r = len(ladder.rungs) - 1 if n is None else ladder.rung_index(n)
    top = ladder.top_nonmate[ladder.nonmated[:, r], r]
    if len(top) == 0:
        raise ValueError("no non-mated search at that rung")
    return float(np.quantile(top, 1.0 - fpir))


def measured_fpir(ladder: Ladder, t: float, options: Options = Options()) -> MeasuredFPIR:
    """FPIR(N_r, T) measured at every rung, over the searches non-mated there.

    The interval is Wilson's, or a percentile interval over replicates that
    resample clusters when the ladder has a cluster array."""
    nm = ladder.nonmated
    hit = (ladder.top_nonmate >= t) & nm
    count = hit.sum(axis=0)
    of = nm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fp = count / of
    if ladder.cluster is None:
        lo, hi = binomial_ci(count, of, level=options.level)
    else:
        cidx, g = index_clusters(ladder.cluster)
        hit_c = np.zeros((g, len(ladder.rungs)))
        nm_c = np.zeros((g, len(ladder.rungs)))
        np.add.at(hit_c, cidx, hit)
        np.add.at(nm_c, cidx, nm)
        reps = []
        for w in bootstrap_weights(g, options.n_boot, options.seed):
            with np.errstate(invalid="ignore", divide="ignore"):
                reps.append((w @ hit_c) / (w @ nm_c))
        lo, hi = percentile_interval(np.concatenate(reps), options.level)
    return MeasuredFPIR(ladder.rungs.copy(), count, of, fp, lo, hi)
