"""FPIR(N, T) beyond the measured ladder: two models in N that allow for
per-probe heterogeneity, an extreme-value tail in T, resampled intervals,
and the people they stand for (docs/projection.md).

- ``ladder``: the ladder's data (per search and rung, the best non-mate
  score), the fits' options, a projected figure (:class:`Estimate`, which
  says how far past the data it is) and the FPIR each rung measures;
- ``frailty``: the gamma-frailty model in N, fitted by maximum likelihood;
- ``shift``: the shift model in N (per-search maxima move by b ln N);
- ``validation``: a fit on the smaller rungs checked against a larger one;
- ``tail``: a generalized Pareto tail in T at one gallery size;
- ``people``: FPIR as people a year, and the error modes of mated searches;
- ``resampling``: the bootstrap replicates every interval is drawn from.
"""

from fpscale.bench.measure.fpir_model.frailty import (FrailtyFit, first_exceedance, fit_frailty,
                                                      frailty_fpir, independence_fpir, predict_fpir)
from fpscale.bench.measure.fpir_model.ladder import (Estimate, Ladder, MeasuredFPIR, Options,
                                                     decades_past_data, measured_fpir,
                                                     threshold_at_fpir)
from fpscale.bench.measure.fpir_model.people import (MatedErrors, PeoplePerYear, Volume, mated_errors,
                                                     people_per_year)
from fpscale.bench.measure.fpir_model.shift import (ShiftFit, fit_shift, growth_scale, predict_shift,
                                                    predict_shift_many)
from fpscale.bench.measure.fpir_model.tail import TailFit, fit_tail, tail_fpir, tail_threshold
from fpscale.bench.measure.fpir_model.validation import Validation, validate

__all__ = [
    "Ladder", "Options", "Estimate", "FrailtyFit", "TailFit", "Validation",
    "Volume", "PeoplePerYear", "MatedErrors", "MeasuredFPIR", "ShiftFit",
    "decades_past_data", "frailty_fpir", "independence_fpir",
    "threshold_at_fpir", "measured_fpir", "first_exceedance", "fit_frailty",
    "predict_fpir", "validate", "fit_shift", "growth_scale", "predict_shift", "predict_shift_many",
    "fit_tail", "tail_fpir", "tail_threshold", "people_per_year", "mated_errors",
]
