"""What FPIR means in people a year, and the error modes of mated searches.

:func:`people_per_year` turns FPIR into false-positive searches a year and
into distinct persons falsely matched a year, bounded by two assumptions
about a person booked b times a year (see there). :func:`mated_errors`
gives the two error modes of mated searches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fpscale.bench.measure.fpir_model.ladder import Estimate
from fpscale.bench.measure.metrics import binomial_ci


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
