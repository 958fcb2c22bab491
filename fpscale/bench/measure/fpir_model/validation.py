"""A fit on the smaller rungs checked against a larger rung it never saw:
the held-out test that says how far past its data a projection holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fpscale.bench.measure.fpir_model.frailty import (FrailtyFit, fit_frailty, predict_fpir,
                                                      predict_same_searches)
from fpscale.bench.measure.fpir_model.ladder import Estimate, Ladder, Options, decades_past_data
from fpscale.bench.measure.fpir_model.shift import ShiftFit, fit_shift, predict_shift
from fpscale.bench.measure.metrics import binomial_ci


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
        same = predict_same_searches(ladder, fit, t, n_test, opt)
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
