"""FPIR(N, T) beyond the measured ladder: two models in N that allow for
per-probe heterogeneity, an extreme-value tail in T, resampled intervals,
and the people they stand for.

Words as in docs/design.md: a non-mated search returns a false positive at
threshold T when its best non-mate score over the N gallery records is >= T;
FPIR(N, T) is the share of non-mated searches that do.

Data
----
A ladder pass gives, per search q and rung r (gallery prefixes [0, N_r),
N increasing), ``top_nonmate[q, r]``, the best non-mate score in the prefix
(a running maximum over rungs), and ``mate[q]``, the gallery id of the
search's mate or -1. A search whose mate id is >= N_r is non-mated at rung
r; one whose mate lies inside the prefix is mated there. Everything below
takes a :class:`Ladder`.

Model in N (per-probe frailty)
------------------------------
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

Likelihood. For each search the ladder gives the first rung at which its
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

Model in N (shift of per-search maxima)
---------------------------------------
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

Intervals are percentile intervals over bootstrap replicates that resample
whole searches, or whole clusters (persons) when the ladder carries a
``cluster`` array, and refit the model in each. Default 2000 replicates; all
draws come from ``numpy.random.default_rng(seed)``.

Model in T (per-search maxima)
------------------------------
At a fixed N, FPIR(N, T) = P(M >= T) where M is a search's best non-mate
score. Below the data's reach (FPIR < 1 / searches) it comes from a
generalized Pareto tail (peaks over threshold) fitted to the largest
``tail_fraction`` of the per-search maxima: FPIR(T) = (n_u / n) GPD_sf(T - u).
The GPD is fitted by probability-weighted moments (Hosking and Wallis 1987):
closed form, so every bootstrap replicate is refitted exactly and in one
vectorised pass; for shapes xi < 0.5, as scores have, it is about as
efficient as maximum likelihood and steadier on a few hundred exceedances.
The tail threshold u is re-chosen in every replicate.

Distance from the data
----------------------
Every figure is an :class:`Estimate` that says how many decades past the
data it is: in N, log10(N / largest rung fitted); in FPIR, log10((1/n) /
FPIR) with n the searches measured (1/n being the smallest non-zero FPIR
they can show). Past ``max_decades`` (default 1, the distance the held-out
validation checks: fit on rungs up to N, predict 10 N) the value is None
and ``reason`` says why.

People
------
:func:`people_per_year` turns FPIR into false-positive searches a year and
into distinct persons falsely matched a year, bounded by two assumptions
about a person booked b times a year (see there). :func:`mated_errors`
gives the two error modes of mated searches.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize, stats

from fpscale.bench.measure.metrics import binomial_ci
from fpscale.bench.measure.weighted_quantile import upper_quantiles, weight_at_or_above

__all__ = [
    "Ladder", "Options", "Estimate", "FrailtyFit", "TailFit", "Validation",
    "Volume", "PeoplePerYear", "MatedErrors", "MeasuredFPIR", "ShiftFit",
    "decades_past_data", "frailty_fpir", "independence_fpir",
    "threshold_at_fpir", "measured_fpir", "first_exceedance", "fit_frailty",
    "predict_fpir", "validate", "fit_shift", "predict_shift", "predict_shift_many", "fit_tail", "tail_fpir", "tail_threshold",
    "people_per_year", "mated_errors",
]

_S_BOUNDS = (-60.0, 6.0)      # log m: m from 1e-26 to about 400 per comparison
_SHIFT_LEVELS = 16            # FPIR levels whose quantiles the shift model regresses on ln N
_SHIFT_MIN_ABOVE = 20         # the smallest level has this many searches above it
_SHIFT_TOP = 0.5              # the largest level
_TINY = 1e-300
_CHUNK = 256                  # bootstrap replicates drawn at a time


# ---------------------------------------------------------------- containers

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


@dataclass(frozen=True)
class Validation:
    """A fit on rungs <= n_fit checked against the measured rung n_test.

    predicted: population FPIR(n_test) with its bootstrap interval;
    predicted_same (frailty models; None for the shift model): the FPIR
    these same searches should show at n_test given what they showed up to
    n_fit (prediction interval: parameter uncertainty plus each surviving
    search's own chance); measured, with its Wilson interval (measured_lo,
    measured_hi), count of of; inside: measured lies in predicted_same's
    interval (predicted's for the shift model); overlap: the measured interval meets
    predicted's interval; fit: the fit used. Made by validate."""

    model: str
    threshold: float
    n_fit: float
    n_test: float
    decades: float
    predicted: Estimate
    predicted_same: Estimate | None
    measured: float
    measured_lo: float
    measured_hi: float
    count: int
    of: int
    inside: bool
    overlap: bool
    fit: FrailtyFit | ShiftFit


@dataclass(frozen=True)
class Volume:
    """Program volume: searches_per_year S, mated_share p, and
    bookings_per_person b, the mean number of searches a year of a person
    searched at least once that year (b >= 1)."""

    searches_per_year: float
    mated_share: float
    bookings_per_person: float = 1.0


@dataclass(frozen=True)
class PeoplePerYear:
    """Yearly false positives from non-mated searches, each an Estimate:
    fp_searches (searches returning someone else above T), persons_low
    (distinct persons if a falsely matched person is matched on every one of
    their b searches) and persons_high (distinct persons if each search is
    matched independently)."""

    fp_searches: Estimate
    persons_low: Estimate
    persons_high: Estimate


@dataclass(frozen=True)
class MatedErrors:
    """Error modes of mated searches at one rung and threshold, each as
    (rate, lo, hi) over `of` mated searches: wrong_top (the top candidate
    scores >= T and is a non-mate) and any_nonmate (some non-mate scores
    >= T, so the list above T names someone else)."""

    wrong_top: tuple[float, float, float]
    any_nonmate: tuple[float, float, float]
    of: int


# ---------------------------------------------------------------- closed forms

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


# ---------------------------------------------------------------- measured

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
        cidx, g = _cluster_index(ladder.cluster)
        hit_c = np.zeros((g, len(ladder.rungs)))
        nm_c = np.zeros((g, len(ladder.rungs)))
        np.add.at(hit_c, cidx, hit)
        np.add.at(nm_c, cidx, nm)
        reps = []
        for w in _weights(g, options.n_boot, options.seed):
            with np.errstate(invalid="ignore", divide="ignore"):
                reps.append((w @ hit_c) / (w @ nm_c))
        lo, hi = _percentile(np.concatenate(reps), options.level)
    return MeasuredFPIR(ladder.rungs.copy(), count, of, fp, lo, hi)


# ---------------------------------------------------------------- resampling

def _cluster_index(cluster: np.ndarray | None, q: int | None = None) -> tuple[np.ndarray, int]:
    """(index (Q,) of each search's cluster in 0..G-1, G)."""
    if cluster is None:
        return np.arange(q), int(q)
    _, idx = np.unique(cluster, return_inverse=True)
    return idx.ravel(), int(idx.max()) + 1 if len(idx) else 0


def _weights(g: int, n_boot: int, seed: int, chunk: int = _CHUNK):
    """Bootstrap weights in chunks: (b, G) int counts, each row the number
    of times each of G units is drawn when G are drawn with replacement."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draw = rng.integers(0, g, size=(b, g))
        flat = (draw + (np.arange(b) * g)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * g).reshape(b, g).astype(np.float64)
        done += b


def _percentile(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval over axis 0 of replicates x."""
    a = (1 - level) / 2
    return np.nanquantile(x, a, axis=0), np.nanquantile(x, 1 - a, axis=0)


# ---------------------------------------------------------------- frailty fit

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
    cidx, g = _cluster_index(ladder.cluster, len(cells))
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
                  for b in np.diff(np.r_[0:options.n_boot:_CHUNK, options.n_boot]))
    else:
        chunks = (w @ table for w in _weights(g, options.n_boot, options.seed))
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


def _resolve(value: float, bounds: tuple[float, float], decades: tuple[float, float],
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


def predict_fpir(fit: FrailtyFit, n: float, options: Options | None = None) -> Estimate:
    """FPIR at gallery size n from a frailty fit, with the percentile
    interval of its bootstrap replicates; None past options.max_decades."""
    options = options or fit.options
    value = float(frailty_fpir(n, fit.m, fit.tau))
    reps = frailty_fpir(n, fit.boot[:, 0], fit.boot[:, 1])
    lo, hi = _percentile(reps, options.level)
    dn = decades_past_data(float(n), 1.0, fit.n_max)
    df = decades_past_data(value, 1.0 / max(fit.n_searches, 1), 1.0)
    model = ("independence" if options.model == "independence" or options.tau_max == 0
             else "gamma frailty")
    return _resolve(value, (lo, hi), (dn, df),
                    f"FPIR(N={n:g}, T={fit.threshold:.6g}), {model} model", options)


def _same_searches(ladder: Ladder, fit: FrailtyFit, t: float, n_test: float,
                   options: Options) -> Estimate:
    """FPIR the searches non-mated at n_test should show there, given their
    outcomes up to the fit's largest rung (see validate)."""
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
    lo, hi = _percentile(same, options.level)
    return Estimate(float(value), float(lo), float(hi), decades_past_data(n_test, 1.0, fit.n_max),
                    decades_past_data(value, 1.0 / of, 1.0), "",
                    f"FPIR of these {of} searches at N={n_test:g} given their ladder up to {fit.n_max:g}",
                    options.level)


def validate(ladder: Ladder, t: float, n_fit: float, n_test: float,
             options: Options = Options()) -> Validation:
    """Fit on rungs <= n_fit, predict rung n_test, compare with what it measures.

    options.model picks the model: 'frailty', 'independence' (the frailty
    fit with tau = 0) or 'shift'. n_test must be a rung; the prediction is
    made however far n_test is (the decade limit is lifted for it).
    predicted is the population FPIR(n_test) with its bootstrap interval.
    For the frailty models, predicted_same is the FPIR that the searches
    non-mated at n_test should show there given their outcomes up to
    n_fit: one that exceeded t by n_fit counts; one that did not crosses by
    n_test with probability 1 - S(n_test)/S(n_fit), its chance under the
    frailty posterior; the interval draws these crossings for each
    bootstrap replicate's parameters. inside: the measured FPIR lies in
    predicted_same's interval (predicted's for the shift model); overlap:
    the measured (Wilson) interval meets predicted's."""
    it = ladder.rung_index(n_test)
    small = ladder.upto(n_fit)
    dn = decades_past_data(float(n_test), 1.0, float(small.rungs[-1]))
    opt = replace(options, max_decades=max(options.max_decades, dn))
    fit: FrailtyFit | ShiftFit
    if options.model == "shift":
        fit = fit_shift(small, opt)
        pred = predict_shift(fit, n_test, t, opt)
        same = None
    else:
        fit = fit_frailty(small, t, opt)
        pred = predict_fpir(fit, n_test, opt)
        same = _same_searches(ladder, fit, t, n_test, opt)
    nm_test = ladder.nonmated[:, it]
    of = int(nm_test.sum())
    count = int((ladder.top_nonmate[nm_test, it] >= t).sum())
    mlo, mhi = binomial_ci(count, of, level=options.level)
    measured = count / of if of else float("nan")
    ref = same if same is not None else pred
    inside = bool(ref.value is not None and ref.lo <= measured <= ref.hi)
    overlap = bool(pred.value is not None and pred.lo <= mhi and mlo <= pred.hi)
    return Validation(model=options.model, threshold=float(t), n_fit=float(small.rungs[-1]),
                      n_test=float(n_test), decades=dn, predicted=pred, predicted_same=same,
                      measured=float(measured), measured_lo=float(mlo), measured_hi=float(mhi),
                      count=count, of=of, inside=inside, overlap=overlap, fit=fit)


# ---------------------------------------------------------------- shift model

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
    cidx, g = _cluster_index(None if ladder.cluster is None else ladder.cluster[keep], n)
    boot = np.concatenate([_slopes(M, w[:, cidx], logn, levels).mean(axis=1)
                           for w in _weights(g, options.n_boot, options.seed)])
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
    for i, w in zip(range(0, len(fit.boot_b), _CHUNK),
                    _weights(fit.n_clusters, len(fit.boot_b), fit.options.seed)):
        total = w @ per_cluster                    # integer counts: exact in any order
        t_eq = t - fit.boot_b[i:i + len(w), None] * shifts[None, :]          # (b, k)
        # the share of each replicate's weight at or above each t_eq
        idx = np.searchsorted(ranked, t_eq, side="left")                    # first >= t_eq
        reps.append(weight_at_or_above(col, w, idx) / total[:, None])
    reps = np.concatenate(reps)                                              # (B, k)
    out = []
    for k, n in enumerate(ns):
        value = float((fit.maxima >= t - fit.b * shifts[k]).mean())
        lo, hi = _percentile(reps[:, k], options.level)
        dn = decades_past_data(n, 1.0, fit.n_max)
        df = decades_past_data(value if value > 0 else float(hi), 1.0 / len(fit.maxima), 1.0)
        out.append(_resolve(value, (lo, hi), (dn, df),
                            f"FPIR(N={n:g}, T={t:.6g}), shift model (b={fit.b:.4g})", options))
    return out


# ---------------------------------------------------------------- tail in T

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
    cidx, g = _cluster_index(None if cluster is None else np.asarray(cluster).ravel()[order], len(x))
    if len(x) * options.tail_fraction < options.min_exceedances:
        raise ValueError(f"{len(x)} maxima give fewer than {options.min_exceedances} exceedances "
                         f"at tail_fraction {options.tail_fraction}")
    one = np.ones((1, len(x)))
    u, xi, sg, fr = _pwm_weighted(xs, one, options.tail_fraction, options.min_exceedances)
    bu, bx, bs, bf = [], [], [], []
    for w in _weights(g, options.n_boot, options.seed):
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
        for w in _weights(tail.n_clusters, len(reps), tail.options.seed):
            ws = w[:, tail.cluster_index]
            emp.append((ws @ hit) / ws.sum(axis=1))
        emp = np.concatenate(emp)
        reps = np.where(t <= tail.boot_u, emp, reps)
    lo, hi = _percentile(reps, options.level)
    # above the fitted tail's upper end point the estimate is 0: its
    # distance from the data is then that of the interval's upper end
    df = decades_past_data(value if value > 0 else float(hi), 1.0 / tail.n, 1.0)
    return _resolve(value, (lo, hi), (0.0, df), f"FPIR(T={t:.6g}) from the per-search maxima", options)


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
        for w in _weights(tail.n_clusters, len(reps), tail.options.seed):
            ws = w[:, tail.cluster_index]
            cum = np.cumsum(ws, axis=1) / ws.sum(axis=1, keepdims=True)
            emp.append(xs[np.minimum(np.argmax(cum >= fpir, axis=1), len(xs) - 1)])
        reps = np.where(fpir >= tail.boot_frac, np.concatenate(emp), reps)
    lo, hi = _percentile(reps, options.level)
    df = decades_past_data(fpir, 1.0 / tail.n, 1.0)
    return _resolve(value, (lo, hi), (0.0, df), f"threshold with FPIR {fpir:g}", options)


# ---------------------------------------------------------------- people

def people_per_year(fpir: Estimate, volume: Volume) -> PeoplePerYear:
    """False positives a year from an FPIR estimate at the program's gallery size.

    fp_searches = S (1 - p) FPIR: non-mated searches returning someone else
    above T. Persons: a person searched b times a year (volume.
    bookings_per_person) is falsely matched at least once. If a falsely
    matched person is a 'wolf' matched on every one of their searches,
    distinct persons = fp_searches / b (persons_low); if each search is
    matched independently, persons = (S (1 - p) / b) (1 - (1 - FPIR)^b)
    (persons_high, at most fp_searches). Reality lies between when a
    person's searches are positively correlated. Intervals carry FPIR's."""
    S, p, b = volume.searches_per_year, volume.mated_share, volume.bookings_per_person
    if b < 1:
        raise ValueError("bookings_per_person must be >= 1")
    base = S * (1 - p)

    def make(f, what):
        if not fpir.resolved:
            return replace(fpir, what=what)
        return replace(fpir, value=float(f(fpir.value)), lo=float(f(fpir.lo)), hi=float(f(fpir.hi)),
                       what=what)

    return PeoplePerYear(
        fp_searches=make(lambda x: base * x, "false-positive searches a year"),
        persons_low=make(lambda x: base * x / b,
                         "distinct persons falsely matched a year, if matched on every booking"),
        persons_high=make(lambda x: base / b * -np.expm1(b * np.log1p(-min(x, 1.0))),
                          "distinct persons falsely matched a year, if bookings match independently"))


def mated_errors(top_nonmate: np.ndarray, mate_score: np.ndarray, t: float,
                 level: float = 0.95) -> MatedErrors:
    """The two error modes of mated searches at threshold t.

    top_nonmate (M,): best non-mate score of each mated search (its mate
    inside the gallery); mate_score (M,): its mate's score. wrong_top: the
    best candidate is a non-mate scoring >= t (above the mate); any_nonmate:
    a non-mate scores >= t anywhere in the list. Wilson intervals."""
    top = np.asarray(top_nonmate, dtype=np.float64)
    ms = np.asarray(mate_score, dtype=np.float64)
    of = len(top)
    wrong = int(((top >= t) & (top > ms)).sum())
    anyn = int((top >= t).sum())
    out = []
    for k in (wrong, anyn):
        lo, hi = binomial_ci(k, of, level=level)
        out.append((k / of if of else float("nan"), float(lo), float(hi)))
    return MatedErrors(out[0], out[1], of)
