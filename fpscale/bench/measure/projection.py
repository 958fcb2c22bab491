"""From measured ladder rungs to a national-scale projection, checked on held-out data.

For each finger set (one finger, two index fingers, all searched fingers)
and each study threshold T (where the largest rung measures the scenario's
``study_fpir``):

1. Chosen, then validated, on different held-out rungs. The selection
   check fits every headline model on the rungs up to N_sel / 10 and
   predicts the rung N_sel (the largest rung up to a tenth of the largest,
   N_max); the headline model is the one that passes most of these checks
   (the envelope of the shift model under both growth scales and the
   frailty model first on ties), and at least PASS_SHARE of them. The
   final check fits on the rungs up to N_max / 10 and predicts N_max; it
   plays no part in the choice and is the chosen model's credential: a
   model that fails it gives no figure at the target. A ladder too short
   for the selection check chooses on the final check itself, labelled
   optimistic (``fpscale.bench.measure.fpir_model``: the shift model of per-search
   maxima, the gamma-frailty model, and the independence model of a pooled
   per-comparison FMR, shown beside them and never the headline).
2. At the target: FPIR at the national gallery size with its interval,
   false-positive searches and distinct persons a year, the two error modes
   of mated searches, and correct matches to out-of-date records, each with
   how many decades past the data it is. A figure further than
   ``max_decades`` from the data is "not resolved by these data", not a
   number.

docs/projection.md explains the models and what they assume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

from fpscale.bench.measure import fpir_model as fm
from fpscale.bench.measure.metrics import binomial_ci
from fpscale.bench.scenario import ProjectionSpec, TargetSpec

# a field left out of the JSON when it is None (dataclass field metadata)
OMIT_IF_NONE = {"omit_if_none": True}
TAIL_EXCEEDANCES = 2000          # impostor pairs above the pooled-FMR tail threshold
N_BOOT = 1000                    # resamples of searches behind every interval
PASS_SHARE = 0.75                # share of held-out checks a headline model must pass
# the label of a model chosen on the check that then vouches for it
SAME_RUNG = "chosen and checked on the same held-out rung (optimistic)"
FIT_RUNGS = 2                    # a held-out fit needs a slope: rungs at or below a tenth of the test rung
# the three models at once: none of them alone holds a decade past the
# data often enough (the shift model's growth scale cannot be told from the
# ladder, and the frailty model errs the other way where the shift model
# overstates; docs/projection.md), so the interval spans their three 95%
# intervals
ENVELOPE = "envelope"
# the models the envelope spans; the first two are the shift model under
# each growth scale, as ``_options`` names them
ENVELOPE_PARTS = ("shift-normal", "shift", "frailty")
_GROWTHS = ENVELOPE_PARTS[:2]
# checked on held-out data; the independence model (fitted, tau = 0) is
# shown for comparison and never the headline
MODELS = ("shift-normal", "shift", "frailty", ENVELOPE, "independence")
# the headline candidates, in the order that breaks ties
HEADLINE = (ENVELOPE, "shift-normal", "shift", "frailty")


# ---------------------------------------------------------------- results

@dataclass
class Figure:
    """One projected number: value and 95% interval (None when not
    resolved), how many decades past the data it is in gallery size and in
    FPIR, and what it is (or why it is not resolved)."""

    value: float | None
    ci95: list[float | None]
    decades_n: float | None   # None: no data to measure the distance from
    decades_fpir: float | None
    note: str = ""

    def __post_init__(self) -> None:
        # JSON has no infinity: an infinite distance (no data at all) is None
        for name in ("decades_n", "decades_fpir"):
            x = getattr(self, name)
            if x is not None and not np.isfinite(x):
                setattr(self, name, None)

    @property
    def resolved(self) -> bool:
        return self.value is not None


@dataclass
class Measured:
    """A rate measured at one gallery size: count of of, with its interval."""

    n: int
    value: float | None
    ci95: list[float | None]
    count: int
    of: int


@dataclass
class ModelCheck:
    """One model's prediction of the held-out rung."""

    model: str
    predicted: Figure
    inside: bool


@dataclass
class HeldOut:
    """Fit on rungs up to n_fit, predict n_test (at least 10 n_fit)."""

    threshold: float
    n_fit: int
    n_test: int
    measured: Measured
    checks: list[ModelCheck]


@dataclass
class ModelChoice:
    """How the headline model was chosen and what vouches for it.

    scheme: 'two-stage' (chosen on the selection check, validated on the
    final check, which played no part in the choice), 'same-rung' (the
    ladder is too short for a selection check: chosen and checked on the
    same held-out rung, an optimistic credential) or 'none' (no held-out
    check at all). chosen: the model the choice picked ('none' if no model
    passed it); chosen_on and validated_on: [n_fit, n_test] of the two
    checks (empty when there is none); inside of of: the chosen model's
    predictions on the validation check inside their 95% interval;
    validated: at least PASS_SHARE of them were."""

    scheme: str
    chosen: str
    chosen_on: list[int]
    validated_on: list[int]
    inside: int
    of: int
    validated: bool


@dataclass
class Curve:
    """FPIR against gallery size at one threshold, from the smallest rung
    out to as far as figures are resolved (headline model, 95% band)."""

    n: list[float]
    fpir: list[float | None]
    lo: list[float | None]
    hi: list[float | None]


@dataclass
class AtTarget:
    """One threshold at the target gallery size, per year of the program.

    measured: FPIR at every rung; fnir: FNIR(N, 1, T) at the largest;
    fpir: the headline model; fpir_upper_bound: independence with the pooled
    per-comparison FMR (an upper bound, since a search's impostor scores are
    positively correlated); fp_searches: non-mated searches with a
    candidate >= T; persons_low/high: distinct persons among them (matched on
    every booking / bookings matched independently); mated_wrong_top:
    mated searches whose top candidate >= T is someone else (lights-out,
    top-1 decisions); mated_listed_nonmate: mated searches whose list holds a
    non-mate >= T (candidate-list review); stale_record_matches: correct
    matches to out-of-date records (not biometric errors)."""

    threshold: float
    measured: list[Measured]
    fnir: Measured
    fpir: Figure
    fpir_upper_bound: float
    fp_searches: Figure
    persons_low: Figure
    persons_high: Figure
    mated_wrong_top: Figure
    mated_listed_nonmate: Figure
    stale_record_matches: Figure
    curve: Curve | None = None


@dataclass
class PooledTail:
    """The generalized Pareto tail of the pooled impostor histogram above u."""

    u: float
    p_u: float
    gpd: list[float] | None
    pairs: int


@dataclass
class FingerSetProjection:
    """The projection of one finger set (one, two_index or all)."""

    finger_set: str
    rungs: list[int]
    searches: int
    model: str
    model_note: str
    shift_b: Figure | None
    held_out: list[HeldOut]
    at_target: list[AtTarget]
    under_one_per_year: Figure
    pooled_tail: PooledTail
    target_gallery_size: int
    max_decades: float
    # the selection check (empty where the ladder is too short for one) and
    # how the model was chosen; held_out is the final check (validation)
    selection: list[HeldOut] = field(default_factory=list)
    choice: ModelChoice | None = field(default=None, metadata=OMIT_IF_NONE)


# ---------------------------------------------------------------- pooled FMR

def fpir_at_n(fmr: np.ndarray, n: float) -> np.ndarray:
    """Independence model 1 - (1 - FMR)^N, computed without cancellation."""
    fmr = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(n * np.log1p(-fmr))


def pooled_tail(hist: np.ndarray, edges: np.ndarray) -> PooledTail:
    """The histogram of every impostor pair with a generalized Pareto fit to
    its top TAIL_EXCEEDANCES pairs (fitted once per finger set)."""
    total = int(hist.sum())
    tail_counts = np.cumsum(hist[::-1])[::-1]  # pairs with score >= edges[i]
    k = int(np.argmax(tail_counts <= TAIL_EXCEEDANCES))
    u = float(edges[k])
    p_u = tail_counts[k] / total if total else 0.0
    centres = (edges[k:-1] + edges[k + 1:]) / 2 - u
    vals = np.repeat(centres, hist[k:])
    gpd = None
    if len(vals) >= 30:
        c, _, scale = stats.genpareto.fit(np.maximum(vals, 0.0), floc=0.0)
        gpd = [float(c), float(scale)]
    return PooledTail(u, float(p_u), gpd, total)


def pooled_fmr(tail: PooledTail, hist: np.ndarray, edges: np.ndarray, t: float) -> float:
    """FMR(t): empirical from the histogram below the tail threshold, the
    generalized Pareto tail above it."""
    if t > tail.u and tail.gpd is not None:
        return float(tail.p_u * stats.genpareto.sf(t - tail.u, tail.gpd[0], 0.0, tail.gpd[1]))
    tail_counts = np.cumsum(hist[::-1])[::-1]
    i = int(np.clip(np.searchsorted(edges, t, side="left"), 0, len(tail_counts) - 1))
    return float(tail_counts[i] / max(tail.pairs, 1))


# ---------------------------------------------------------------- per year

def false_match_searches_per_year(target: TargetSpec, fpir):
    """Non-mated searches a year with a candidate above T: S (1 - p) FPIR."""
    return target.searches_per_year * (1 - target.mated_share) * fpir


def mated_searches_per_year(target: TargetSpec, rate):
    """Mated searches a year with some outcome of the given rate: S p rate."""
    return target.searches_per_year * target.mated_share * rate


def _figure(e: fm.Estimate) -> Figure:
    return Figure(e.value, [e.lo, e.hi], float(e.decades_n), float(e.decades_fpir),
                  e.reason or e.what)


def envelope(figs: list[Figure], note: str) -> Figure:
    """One figure for several models' figures of the same quantity: the median
    of their values, an interval from the lowest lower to the highest upper
    bound, the largest distances from the data; unresolved if any is. One
    figure is returned as it is."""
    if len(figs) == 1:
        return figs[0]
    for f in figs:
        if not f.resolved:
            return f
    dn = [f.decades_n for f in figs]
    df = [f.decades_fpir for f in figs]
    return Figure(float(np.median([f.value for f in figs])),
                  [min(f.ci95[0] for f in figs), max(f.ci95[1] for f in figs)],
                  None if None in dn else max(dn), None if None in df else max(df), note)


def _scaled(f: Figure, scale, note: str) -> Figure:
    # a figure carried through a monotone map (people per year from FPIR)
    if not f.resolved:
        return replace(f, note=f.note if f.note.startswith("not resolved") else note)
    return Figure(float(scale(f.value)), [float(scale(f.ci95[0])), float(scale(f.ci95[1]))],
                  f.decades_n, f.decades_fpir, note)


# ---------------------------------------------------------------- the projection

@dataclass(frozen=True)
class _Data:
    """One finger set's ladder, with what the per-year figures need."""

    ladder: fm.Ladder
    state: dict
    options: fm.Options
    pooled: PooledTail


def _measured(ladder: fm.Ladder, r: int, t: float) -> Measured:
    nm = ladder.nonmated[:, r]
    k, m = int((ladder.top_nonmate[nm, r] >= t).sum()), int(nm.sum())
    lo, hi = binomial_ci(k, m)
    return Measured(int(ladder.rungs[r]), k / m if m else None, [float(lo), float(hi)], k, m)


def held_out_checks(rungs: np.ndarray) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The held-out checks a ladder (rungs, gallery sizes) allows, each as
    (n_fit, n_test): the final check, fitted on the rungs up to a tenth of
    the largest rung N_max and predicting N_max, and the selection check,
    fitted on the rungs up to a tenth of N_sel and predicting N_sel, the
    largest rung up to a tenth of N_max. None where fewer than FIT_RUNGS
    rungs lie at or below a tenth of the rung to predict."""
    rungs = np.asarray(rungs, dtype=np.float64)

    def check(n_test: float) -> tuple[int, int] | None:
        small = rungs[rungs <= n_test / 10]
        return (int(small[-1]), int(n_test)) if len(small) >= FIT_RUNGS else None

    final = check(float(rungs[-1])) if len(rungs) else None
    selection = check(float(rungs[rungs <= rungs[-1] / 10][-1])) if final else None
    return final, selection


def _held_out(data: _Data, t: float, n_fit: int, n_test: int, models: tuple[str, ...]) -> HeldOut:
    """Each model fitted on the rungs up to n_fit predicts the rung n_test."""
    ladder = data.ladder
    checks = []
    for model in (m for m in models if m != ENVELOPE):
        try:
            v = fm.validate(ladder, t, float(n_fit), float(n_test), _options(data, model))
        except ValueError as e:  # too few searches or rungs for this model
            checks.append(ModelCheck(model, Figure(None, [None, None], 1.0, 0.0,
                                                   f"not fitted: {e}"), False))
            continue
        pred = v.predicted_same if v.predicted_same is not None else v.predicted
        checks.append(ModelCheck(model, _figure(pred), bool(v.inside)))
    measured = _measured(ladder, ladder.rung_index(n_test), t)
    if ENVELOPE in models:
        parts = [c.predicted for c in checks if c.model in ENVELOPE_PARTS]
        fig = envelope(parts, f"FPIR(N={n_test:g}, T={t:.6g}), envelope of {', '.join(ENVELOPE_PARTS)}")
        inside = (len(parts) == len(ENVELOPE_PARTS) and fig.resolved and measured.value is not None
                  and fig.ci95[0] <= measured.value <= fig.ci95[1])
        checks.append(ModelCheck(ENVELOPE, fig, bool(inside)))
    return HeldOut(t, n_fit, n_test, measured, checks)


def _shift_parts(model: str) -> tuple[str, ...]:
    # the shift models a headline model stands on (none for frailty or none)
    return _GROWTHS if model == ENVELOPE else (model,) if model in _GROWTHS else ()


def _options(data: _Data, model: str) -> fm.Options:
    if model.startswith("shift"):
        return replace(data.options, model="shift",
                       growth="normal" if model == "shift-normal" else "log")
    return replace(data.options, model=model)


def _passed(held: list[HeldOut], model: str) -> list[bool]:
    return [c.inside for h in held for c in h.checks if c.model == model]


def _best(held: list[HeldOut]) -> str:
    """Of the headline models that pass at least PASS_SHARE of these checks,
    the one that passes most (earlier in HEADLINE on ties); 'none' if none."""
    best, most = "none", -1
    for model in HEADLINE:
        passed = _passed(held, model)
        if passed and np.mean(passed) >= PASS_SHARE and sum(passed) > most:
            best, most = model, sum(passed)
    return best


def _rungs(h: HeldOut) -> str:
    return f"fitted on rungs up to {h.n_fit:,}, predicting {h.n_test:,}"


def _choose(selection: list[HeldOut], final: list[HeldOut]) -> tuple[ModelChoice, str]:
    """The headline model, chosen on the selection check and validated on
    the final check (or chosen and checked on the final check alone where
    there is no selection check), with a sentence saying how it went."""
    if not final:
        return (ModelChoice("none", "none", [], [], 0, 0, False),
                "not validated: the ladder needs two rungs at or below a tenth of its largest rung")
    fin = [final[0].n_fit, final[0].n_test]
    if not selection:
        model = _best(final)
        passed = _passed(final, model)
        choice = ModelChoice("same-rung", model, fin, fin, sum(passed), len(passed), model != "none")
        if model == "none":
            return choice, (f"no model passed the held-out check ({SAME_RUNG}; {_rungs(final[0])}): "
                            "figures at the target are not given")
        return choice, (f"{model} model, {SAME_RUNG}: {_rungs(final[0])}, {sum(passed)} of "
                        f"{len(passed)} held-out predictions inside their 95% interval (the ladder is "
                        "too short for a separate selection check)")
    sel = [selection[0].n_fit, selection[0].n_test]
    model = _best(selection)
    if model == "none":
        return (ModelChoice("two-stage", "none", sel, fin, 0, 0, False),
                f"no model passed the selection check ({_rungs(selection[0])}): "
                "figures at the target are not given")
    chose = _passed(selection, model)
    passed = _passed(final, model)
    ok = bool(passed) and float(np.mean(passed)) >= PASS_SHARE
    choice = ModelChoice("two-stage", model, sel, fin, sum(passed), len(passed), ok)
    chosen = (f"{model} model, chosen on the selection check ({_rungs(selection[0])}: {sum(chose)} "
              f"of {len(chose)} inside)")
    final_check = f"the final check, which played no part in the choice ({_rungs(final[0])})"
    if ok:
        return choice, (f"{chosen}; validated on {final_check}: {sum(passed)} of {len(passed)} "
                        "predictions inside their 95% interval")
    return choice, (f"{chosen}; failed {final_check}: {sum(passed)} of {len(passed)} predictions "
                    f"inside their 95% interval, fewer than {PASS_SHARE:.0%}: figures at the target "
                    "are not given")


def _both(fits: tuple[fm.ShiftFit, ...]) -> str:
    return ", ".join(f"{f.options.growth} growth b={f.b:.4g}" for f in fits)


def _frailty(data: _Data, model: str, t: float) -> fm.FrailtyFit | str | None:
    # the frailty fit a headline model stands on at T (None: it stands on
    # none; a string: why the fit failed)
    if model not in ("frailty", ENVELOPE):
        return None
    try:
        return fm.fit_frailty(data.ladder, t, data.options)
    except ValueError as e:
        return f"not resolved: the frailty model was not fitted ({e})"


def _predict_many(data: _Data, model: str, ns, t: float,
                  fits: tuple[fm.ShiftFit, ...]) -> list[Figure]:
    """The headline model's FPIR at gallery sizes ns and threshold t: one
    model's figure, or the envelope of its parts' figures."""
    frailty = _frailty(data, model, t)
    # fits is empty unless the model stands on the shift model
    parts = [[_figure(e) for e in fm.predict_shift_many(f, ns, t, data.options)] for f in fits]
    if isinstance(frailty, fm.FrailtyFit):
        parts.append([_figure(fm.predict_fpir(frailty, n, data.options)) for n in ns])
    dn = [fm.decades_past_data(n, 1.0, float(data.ladder.rungs[-1])) for n in ns]
    if isinstance(frailty, str) or not parts:
        return [Figure(None, [None, None], d, 0.0, frailty or "not resolved: no validated model")
                for d in dn]
    what = ("envelope of " + ", ".join(f"shift ({_both((f,))})" for f in fits)
            + (" and gamma frailty" if frailty is not None else "")
            + ": the median of their values, an interval spanning theirs")
    return [envelope([p[k] for p in parts], f"FPIR(N={n:g}, T={t:.6g}), {what}")
            for k, n in enumerate(ns)]


def _curve_sizes(data: _Data, fits: tuple[fm.ShiftFit, ...], target_n: float) -> np.ndarray:
    # gallery sizes of the FPIR-against-N curve (none without a shift fit)
    if not fits:
        return np.zeros(0)
    rungs = data.ladder.rungs
    reach = min(target_n, float(rungs[-1]) * 10 ** data.options.max_decades)
    return np.unique(np.geomspace(float(rungs[0]), max(reach, float(rungs[-1])), 16).round())


def _mated_modes(data: _Data, fits: tuple[fm.ShiftFit, ...], n: float,
                 t: float) -> tuple[Figure, Figure]:
    """Mated searches' two error rates at gallery size n: their best non-mate
    score moved by each shift fit's b (g(n) - g(N)) (measured where n = N),
    as one envelope over the fits."""
    pairs = [_mated_modes_one(data, f, n, t) for f in fits] or [_mated_modes_one(data, None, n, t)]
    note = f"shift model under both growth scales ({_both(fits)})"
    return envelope([a for a, _ in pairs], note), envelope([b for _, b in pairs], note)


def _mated_modes_one(data: _Data, shift: fm.ShiftFit | None, n: float,
                     t: float) -> tuple[Figure, Figure]:
    ladder, st = data.ladder, data.state
    inside = (ladder.mate >= 0) & (ladder.mate < ladder.rungs[-1])
    top = ladder.top_nonmate[inside, -1]
    ms = np.asarray(st["mate_score"], dtype=np.float64)[inside]
    N = float(ladder.rungs[-1])
    dn = fm.decades_past_data(n, 1.0, N)
    if len(top) == 0 or (n != N and shift is None):
        why = "no mated searches" if len(top) == 0 else "not resolved: needs the shift model"
        return (Figure(None, [None, None], dn, 0.0, why),) * 2
    rng = np.random.default_rng(data.options.seed)
    boot_b = shift.boot_b if shift is not None else np.zeros(N_BOOT)
    b0 = shift.b if shift is not None else 0.0
    growth = shift.options.growth if shift is not None else "log"
    lift = float(fm.growth_scale(n, growth) - fm.growth_scale(N, growth))
    idx = rng.integers(0, len(top), size=(len(boot_b), len(top)))
    out = []
    for rule in (lambda x, m: (x >= t) & (x > m), lambda x, m: x >= t):
        value = float(rule(top + b0 * lift, ms).mean())
        reps = rule(top[idx] + boot_b[:, None] * lift, ms[idx]).mean(axis=1)
        lo, hi = np.percentile(reps, [2.5, 97.5])
        df = fm.decades_past_data(value if value > 0 else float(hi), 1.0 / len(top), 1.0)
        lim = data.options.max_decades + 1e-9
        note = ("" if max(dn, df) <= lim else
                f"not resolved: {max(dn, df):.1f} decades past the data (limit {data.options.max_decades:g})")
        out.append(Figure(None if note else value, [None, None] if note else [float(lo), float(hi)],
                          dn, df, note))
    return out[0], out[1]


def _fnir(data: _Data, t: float) -> Measured:
    # mated searches (mate in the largest rung) missed at T: mate below T
    # or a non-mate above the mate (rank > 1 in a top-1 decision)
    ladder, st = data.ladder, data.state
    inside = (ladder.mate >= 0) & (ladder.mate < ladder.rungs[-1])
    ms = np.asarray(st["mate_score"], dtype=np.float64)[inside]
    better = np.asarray(st["better_than_mate"])[inside, -1]
    k, m = int(((ms < t) | (better > 0)).sum()), int(inside.sum())
    lo, hi = binomial_ci(k, m)
    return Measured(int(ladder.rungs[-1]), k / m if m else None, [float(lo), float(hi)], k, m)


def _at_target(data: _Data, target: TargetSpec, model: str, fits: tuple[fm.ShiftFit, ...],
               t: float) -> AtTarget:
    N = float(target.gallery_size)
    ns = _curve_sizes(data, fits, N)
    # the target and the curve in one call: one frailty fit per threshold
    figs = _predict_many(data, model, [N, *ns.tolist()], t, fits)
    fpir, pts = figs[0], figs[1:]
    curve = (Curve(ns.tolist(), [f.value for f in pts], [f.ci95[0] for f in pts],
                   [f.ci95[1] for f in pts]) if len(ns) else None)
    st = data.state
    fmr = pooled_fmr(data.pooled, st["impostor_hist"], st["hist_edges"], t)
    S1 = target.searches_per_year * (1 - target.mated_share)
    b = target.bookings_per_person
    wrong, listed = (_mated_modes(data, fits, N, t) if _shift_parts(model) else
                     (Figure(None, [None, None], fpir.decades_n, 0.0,
                             "not resolved: needs the shift model"),) * 2)
    fnir = _fnir(data, t)
    hit = 1 - fnir.value if fnir.value is not None else None
    stale = (Figure(None, [None, None], 0.0, 0.0, "no mated searches") if hit is None else
             Figure(float(mated_searches_per_year(target, hit) * target.stale_record_share),
                    [float(mated_searches_per_year(target, 1 - fnir.ci95[1]) * target.stale_record_share),
                     float(mated_searches_per_year(target, 1 - fnir.ci95[0]) * target.stale_record_share)],
                    0.0, 0.0, "correct matches to out-of-date records a year (FNIR measured at the "
                    "largest rung; the record share is the scenario's)"))
    return AtTarget(
        threshold=t, measured=[_measured(data.ladder, r, t) for r in range(len(data.ladder.rungs))],
        fnir=fnir,
        fpir=fpir, fpir_upper_bound=float(fpir_at_n(fmr, N)),
        fp_searches=_scaled(fpir, lambda x: false_match_searches_per_year(target, x),
                            "false-positive searches a year"),
        persons_low=_scaled(fpir, lambda x: S1 * x / b,
                            "distinct persons falsely matched a year, if matched on every booking"),
        persons_high=_scaled(fpir, lambda x: S1 / b * -np.expm1(b * np.log1p(-min(x, 1.0 - 1e-16))),
                             "distinct persons falsely matched a year, if bookings match independently"),
        mated_wrong_top=_scaled(wrong, lambda x: mated_searches_per_year(target, x),
                                "mated searches a year whose top candidate above T is someone else"),
        mated_listed_nonmate=_scaled(listed, lambda x: mated_searches_per_year(target, x),
                                     "mated searches a year whose list above T names someone else"),
        stale_record_matches=stale, curve=curve)


def _under_one(data: _Data, target: TargetSpec, model: str,
               fits: tuple[fm.ShiftFit, ...]) -> Figure:
    """The threshold at which false-positive searches fall under one a year
    at the target: the per-search maxima's tail in T, moved by the shift."""
    N = float(target.gallery_size)
    need = 1.0 / max(false_match_searches_per_year(target, 1.0), 1.0)
    L = data.ladder
    dn = fm.decades_past_data(N, 1.0, float(L.rungs[-1]))
    if not fits:  # empty unless the headline stands on the shift model
        return Figure(None, [None, None], dn, 0.0, "not resolved: needs the shift model")
    keep = L.nonmated[:, -1]
    try:
        tail = fm.fit_tail(L.top_nonmate[keep, -1], None if L.cluster is None else L.cluster[keep],
                           data.options)
    except ValueError as e:
        return Figure(None, [None, None], dn, 0.0, f"not resolved: {e}")
    e = fm.tail_threshold(tail, need, data.options)
    lifts = [f.b * float(fm.growth_scale(N, f.options.growth)
                         - fm.growth_scale(float(L.rungs[-1]), f.options.growth)) for f in fits]
    df = e.decades_fpir
    lim = data.options.max_decades + 1e-9
    if max(dn, df) > lim:
        return Figure(None, [None, None], dn, df,
                      f"not resolved by these data: needs FPIR {need:.2g} at N = {N:,.0f}, "
                      f"{dn:.1f} decades past the largest rung in N and {df:.1f} in FPIR "
                      f"(limit {data.options.max_decades:g})")
    what = f"threshold with under one false-positive search a year (FPIR {need:.2g})"
    return envelope([Figure(float(e.value + x), [float(e.lo + x), float(e.hi + x)], dn, df, what)
                     for x in lifts], f"{what}; shift model under both growth scales ({_both(fits)})")


@dataclass(frozen=True)
class Study:
    """What to project: the scenario's [projection] and [target], the seed of
    the resamples, and thresholds to study (None: where the largest rung
    measures proj.study_fpir)."""

    proj: ProjectionSpec
    target: TargetSpec
    seed: int
    thresholds: tuple[float, ...] | None = None


def project_finger_set(study: Study, st: dict, fset: str) -> FingerSetProjection:
    """The projection of one finger set from its ladder state (``LadderScan.state``
    with the searches' ``mate`` and, where known, ``person``)."""
    proj, target = study.proj, study.target
    ladder = fm.Ladder(st["rungs"], st["top_nonmate"], st["mate"], st.get("person"),
                       bool(st.get("nested", True)))
    pooled = pooled_tail(st["impostor_hist"], st["hist_edges"])
    data = _Data(ladder, st, fm.Options(n_boot=N_BOOT, seed=study.seed,
                                        max_decades=proj.max_decades), pooled)
    largest = ladder.top_nonmate[ladder.nonmated[:, -1], -1]
    if study.thresholds is not None:
        thresholds = sorted(set(float(t) for t in study.thresholds))
    else:
        thresholds = sorted({float(np.quantile(largest, 1 - f)) for f in proj.study_fpir
                             if len(largest) and f * len(largest) >= 1})
    final, select = held_out_checks(ladder.rungs)
    held = [_held_out(data, t, *final, MODELS) for t in thresholds] if final else []
    selection = [_held_out(data, t, *select, HEADLINE) for t in thresholds] if select else []
    choice, note = _choose(selection, held)
    # a model that fails its validation gives no figure at the target
    model = choice.chosen if choice.validated else "none"
    # the shift fits the headline stands on; the normal-growth fit's b is
    # reported whatever the headline
    fits: tuple[fm.ShiftFit, ...] = ()
    shift_b = None
    if len(ladder.rungs) >= 2:
        try:
            fits = tuple(fm.fit_shift(ladder, _options(data, m))
                         for m in (_shift_parts(model) or ("shift-normal",)))
            lo, hi = np.percentile(fits[0].boot_b, [2.5, 97.5])
            shift_b = Figure(fits[0].b, [float(lo), float(hi)], 0.0, 0.0,
                             f"score gained per unit of the {fits[0].options.growth} growth scale")
        except ValueError:
            fits = ()
        if not _shift_parts(model):
            fits = ()
    return FingerSetProjection(
        fset, ladder.rungs.astype(int).tolist(), int(len(largest)), model, note, shift_b, held,
        [_at_target(data, target, model, fits, t) for t in thresholds],
        _under_one(data, target, model, fits), pooled, int(target.gallery_size),
        proj.max_decades, selection, choice)


def project(study: Study, ladder_state: dict,
            done: Callable[[], None] | None = None) -> dict[str, FingerSetProjection]:
    """Projection for every finger set measured: ladder_state maps a finger
    set to its ladder state with ``mate`` (Q,) and optionally ``person`` (Q,).
    done, if given, is called after each finger set (a progress bar's step)."""
    out = {}
    for fs, st in ladder_state.items():
        out[fs] = project_finger_set(study, st, fs)
        if done is not None:
            done()
    return out
