"""What the command line prints of a projection: a few lines per finger set."""

from __future__ import annotations

from fpscale.bench.measure.miss_sources import MissSources
from fpscale.bench.measure.projection import FingerSetProjection, Figure
from fpscale.bench.scenario import TargetSpec


def _n(f: Figure) -> str:
    if f.value is None:
        return "not resolved"
    lo, hi = f.ci95
    return f"{f.value:,.0f} [{lo:,.0f}, {hi:,.0f}]" if f.value >= 10 else \
        f"{f.value:.3g} [{lo:.3g}, {hi:.3g}]"


def _rate(f: Figure) -> str:
    if f.value is None:
        return f.note
    lo, hi = f.ci95
    return f"{f.value:.4g} [{lo:.4g}, {hi:.4g}]"


def projection_lines(target: TargetSpec, projection: dict[str, FingerSetProjection]) -> list[str]:
    """Lines saying, per finger set and threshold, what the projection found
    at the target, with intervals, or why a figure is not given."""
    out = [f"Projected to {target.gallery_size:,} enrolled, {target.searches_per_year:,.0f} "
           f"searches a year (mated share {target.mated_share}, "
           f"{target.bookings_per_person:g} bookings per person a year):"]
    for fs, p in projection.items():
        out.append(f"  {fs}: {p.model_note}")
        # the check that chose the model, then the one that validated it
        for what, held in (("chosen on", p.selection),
                           ("validated on" if p.selection else "held out", p.held_out)):
            for h in held:
                checks = ", ".join(f"{c.model} {'inside' if c.inside else 'outside'}" for c in h.checks)
                m = h.measured
                out.append(f"    {what}, T = {h.threshold:.4f}: measured FPIR {m.value:.4f} at "
                           f"N = {h.n_test:,} ({checks})")
        for a in p.at_target:
            out.append(f"    T = {a.threshold:.4f}: FPIR at target {_rate(a.fpir)}; "
                       f"independence bound {a.fpir_upper_bound:.3g}")
            c = a.curve
            if a.fpir.value is None and c is not None and c.fpir and c.fpir[-1] is not None:
                out.append(f"      furthest resolved: FPIR {c.fpir[-1]:.4g} [{c.lo[-1]:.4g}, {c.hi[-1]:.4g}] "
                           f"at N = {c.n[-1]:,.0f}")
            if a.fpir.value is not None:
                out.append(f"      false-positive searches a year {_n(a.fp_searches)}; distinct persons "
                           f"{_n(a.persons_low)} to {_n(a.persons_high)}; mated searches with someone "
                           f"else on top {_n(a.mated_wrong_top)}")
        u = p.under_one_per_year
        out.append("    under one false-positive search a year: "
                   + (f"T >= {u.value:.4f} [{u.ci95[0]:.4f}, {u.ci95[1]:.4f}]" if u.value is not None
                      else u.note))
    return out


def miss_source_line(key: str, ms: MissSources) -> str:
    """One sentence: where a re-scored backend's misses at one FPIR target come from."""
    f = ms.fnir_all_listed
    floor = (f"{f.value:.4f} [{f.ci95[0]:.4f}, {f.ci95[1]:.4f}]"
             if f.value is not None and None not in f.ci95 else "n/a")
    return (f"{key} at FPIR {ms.target_fpir:g}: {ms.misses:,} of {ms.mated:,} mated searches "
            f"missed: {ms.not_listed_above:,} not listed by the candidate stage though the 1:1 "
            f"score reaches T{retrieved_clause(ms)}, {ms.not_listed_below:,} not listed and below T, "
            f"{ms.listed_missed:,} listed and missed; FNIR had every mate been listed {floor}"
            + unmatchable_clause(ms))


def retrieved_clause(ms: MissSources) -> str:
    """' (K of them in its top D)', or '' where the backend retrieved no
    deeper list than it had re-scored."""
    if ms.retrieved is None:
        return ""
    refinable = ("" if ms.not_listed_above_refinable is None else
                 f"; of the others, {ms.not_listed_above_refinable:,} the refinement would have "
                 f"handed on had the backend retrieved them")
    return f" ({ms.not_listed_above_retrieved:,} of them in its top {ms.retrieved:,}{refinable})"


def unmatchable_clause(ms: MissSources) -> str:
    """'; K of the misses are unmatchable bookings ...', or '' where the
    population has none."""
    if ms.unmatchable is None:
        return ""
    return (f"; {ms.unmatchable:,} of the misses are unmatchable bookings (captures of another "
            f"person's fingers, population.unmatchable_share), missed by construction")
