"""Markdown of a profile: in every run report that uses one, and the
calibration report ``fpscale calibrate`` writes."""

from __future__ import annotations

import math

from fpscale.bench.profile import Calibration


def _r(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if 0 < abs(x) < 1e-3 else f"{x:.{digits}f}"


def profile_lines(cal: Calibration) -> list[str]:
    """The profile's settings, targets with sources, and fits (measured,
    with 95% intervals and the gallery size each was measured at)."""
    if not cal.profile:
        return []
    out = ["", f"## Matcher profile: {cal.profile}", ""]
    if cal.description:
        out += [" ".join(cal.description.split()), ""]
    out += ["Settings it fixes: " + "; ".join(f"`{s}`" for s in cal.settings) + ".", ""]
    if cal.targets:
        out += ["| target | scenario | gallery N | FPIR | published FNIR | source |",
                "|---|---|---|---|---|---|"]
        out += [f"| {t.name} | {t.scenario} | {t.gallery_size:,} | {t.fpir:g} | {t.fnir:g} | {t.source} |"
                for t in cal.targets]
        out.append("")
    if cal.fit:
        out += ["| target | fitted | with | measured at N | searches | FNIR [95%] | FPIR | mate listed by the candidate stage | misses (in the candidate stage) | date |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        out += [f"| {f.target} | {f.parameter} = {f.value:g} | {f.settings or 'not recorded'} | "
                f"{f.gallery_size:,} | {f.searches:,} | "
                f"{_r(f.fnir)} [{_r(f.fnir_low)}, {_r(f.fnir_high)}] | {_r(f.fpir)} | "
                f"{_r(f.candidate_recall)} | {f.misses} ({f.candidate_misses}) | {f.date} |" for f in cal.fit]
        out += ["", "A fit measured below the target's gallery size is not the published point "
                "reproduced; only a row at the target's N is (docs/calibration.md)."]
        if any(f.parameter == "population.unmatchable_share" for f in cal.fit):
            out += ["", "Rows measured with unmatchable bookings (`population.unmatchable_share`) "
                    "count them among the misses but not among the candidate stage's; the "
                    "run's own report says how many there were (docs/calibration.md)."]
    else:
        out.append("Not calibrated yet: no fit is recorded (`fpscale calibrate "
                   f"{cal.profile}`).")
    return out + [""]


def facts_lines(facts: dict) -> list[str]:
    """The population the fitted parameters produce, against cited ranges."""
    out = ["", "## The population these settings produce", "",
           "| capture | minutiae mean | 5th-95th percentile | cited range | within |", "|---|---|---|---|---|"]
    for m in facts["minutiae"]:
        cited = "n/a" if m["cited_low"] is None else f"{m['cited_low']}-{m['cited_high']}"
        out.append(f"| {m['capture']} | {m['mean']:.1f} | {m['p5']:.0f}-{m['p95']:.0f} | {cited} | "
                   f"{'n/a' if m['within_cited'] is None else ('yes' if m['within_cited'] else 'NO')} |")
    out += ["", "| pattern class | share | cited |", "|---|---|---|"]
    out += [f"| {c} | {v['share']:.3f} | {v['cited']:.3f} |" for c, v in facts["classes"].items()]
    q = facts["quality"]
    out += ["", "Booking quality shares (levels 1-5) drawn: "
            + ", ".join(f"{x:.3f}" for x in q["booking_shares"]) + "; configured: "
            + ", ".join(f"{x:g}" for x in q["configured"]) + "; gallery configured: "
            + ", ".join(f"{x:g}" for x in q["gallery_configured"]) + ". The shares are fpscale's "
            "assumption (no source gives them; docs/calibration.md) and are not fitted. "
            f"Within-person quality correlation {q['quality_correlation']:g} (latent); the two "
            f"index fingers' levels correlate {q['finger_level_correlation']:.2f}."]
    o = facts["overlap"]
    out += ["", f"Placement (capture noise {o['capture_noise']:g}): of the true minutiae a booking "
            f"capture holds (the finger's within its window, before extraction errors), the "
            f"enrolled capture of that finger also holds a share of {o['mean']:.2f} on average "
            f"(median {o['p50']:.2f}, 5th-95th percentile {o['p5']:.2f}-{o['p95']:.2f}; booking "
            f"{o['booking']} against enrolment {' / '.join(o['enrolment'])}). For cooperative users "
            f"of a civilian scanner a minutia of one plain capture is in another with median "
            f"probability {o['cited']:g} (interquartile range {o['cited_iqr']:g}; docs/sources.md): "
            + (f"this population's median reaches that at capture noise {o['floor']:.3g}, and a "
               "capture noise below it would place captures more alike than those users do."
               if o["floor"] is not None else
               "this population's median is above that at any capture noise up to 1.")]
    return out


def trials_lines(trials: list, chosen, label: str = "extraction noise") -> list[str]:
    """The bisection's runs, the chosen one marked; label names the fitted parameter."""
    out = ["", "## Trials", "", "Misses: mated searches without the mate at rank <= R above the "
           "threshold; 'in the candidate stage': the mate was not among the re-scored candidates, "
           "so no 1:1 matcher could have found it.", "",
           f"| {label} | FNIR [95%] | FPIR | threshold | mate listed (L) | misses | in the candidate stage | |",
           "|---|---|---|---|---|---|---|---|"]
    for t in trials:
        out.append(f"| {t.value:g} | {_r(t.fnir)} [{_r(t.fnir_low)}, {_r(t.fnir_high)}] | {_r(t.fpir)} | "
                   f"{_r(t.threshold)} | {_r(t.candidate_recall)} | {t.misses} | {t.candidate_misses} | "
                   f"{'chosen' if t is chosen else ''} |")
    return out


def det_lines(det_rows: list[tuple[float, float, float]]) -> list[str]:
    """The DET around the point: (threshold, FNIR, FPIR) rows."""
    out = ["", "## DET around the point (chosen trial)", "", "| threshold | FNIR | FPIR |", "|---|---|---|"]
    out += [f"| {_r(t)} | {_r(fn)} | {_r(fp)} |" for t, fn, fp in det_rows]
    return out
