"""``fpscale calibrate PROFILE``: fit a profile's extraction or capture noise to a published point.

The published points (``profiles/<name>.toml``, docs/calibration.md) are
FNIR at a fixed FPIR of real matchers on galleries of millions. The search
runs the target's own scenario (its finger set, captures and candidate
list) with the profile's settings at a chosen gallery size (smaller than
the published one for speed, or the published one itself), tries the low
end of the extraction noise's range first and, when that meets the
published FNIR at the target FPIR, bisects (log scale) for the noisiest
value that still does. Why a small gallery can stand in for the
published one: only the top candidates are re-scored, so the threshold at a
given FPIR is set by those candidates' 1:1 scores, which do not depend on
N; what grows with N is the candidate stage's misses, reported beside
every fit as how often the mate was listed at all. ``--confirm`` then
runs the target's scenario at the published N with the fitted value.
``--parameter population.capture_noise`` fits how differently a finger is
placed on each capture instead, at the profile's extraction noise, from
the cited floor of placement consistency (``population_facts.
capture_noise_floor``) up. ``--parameter population.unmatchable_share``
fits the share of mated bookings that no matcher can match (the flat tail
of a DET curve, ``fpscale.synth.population``) from 0 up, bisected on a
linear scale; it can only add misses, so a target the profile misses at 0
stays missed.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpscale.bench.measure.metrics import binomial_ci
from fpscale.bench.profile import (ProfileError, ProfileFit, ProfileTarget, calibration_from_dict, read_profile,
                           record)
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict
from fpscale.bench.store.files import read_npz, write_text
from fpscale.bench.store.summary import Summary
from fpscale.synth.population import PopulationSpec, unmatchable_bookings

# Extraction noise searched, as a multiple of fpscale.synth.impressions' table. The
# floor keeps the best quality level's position error at 0.05 mm, one pixel
# at 500 ppi: an extractor cannot place minutiae finer than its pixels, so a
# fit that needs less is reported as not reached instead of bought with an
# impossible extractor.
NOISE_RANGE = (0.5, 1.5)
PARAMETER = "population.extraction_noise"
CAPTURE = "population.capture_noise"
# the capture noise searched: from the floor set by the cited placement
# consistency of cooperative users (computed per target) to 1.5
CAPTURE_TOP = 1.5
UNMATCHABLE = "population.unmatchable_share"
# the unmatchable share searched: none up to a fifth of mated bookings, four
# times target I's whole FNIR
UNMATCHABLE_RANGE = (0.0, 0.2)


def population_field(key: str) -> str:
    """The PopulationSpec field of a "population.<field>" key."""
    return key.split(".", 1)[1]


@dataclass(frozen=True)
class Parameter:
    """The population key a calibration fits and the range it searches."""

    key: str
    low: float
    high: float
    log: bool = True  # bisected on a log scale (a noise) or a linear one (a share from 0)

    @property
    def label(self) -> str:
        return population_field(self.key).replace("_", " ")


EXTRACTION = Parameter(PARAMETER, *NOISE_RANGE)


@dataclass(frozen=True)
class Trial:
    """One run of the target's scenario at one value of the fitted parameter."""

    value: float
    fnir: float | None
    fnir_low: float | None
    fnir_high: float | None
    fpir: float | None
    threshold: float | None
    candidate_recall: float
    candidate_misses: int  # misses whose mate the re-scored part of the list did not hold
    misses: int
    folder: str
    unmatchable: int = 0   # misses that are unmatchable bookings (in neither count above)


@dataclass(frozen=True)
class CalibrationRequest:
    """What to fit: the profile, its target, the size of the runs and where they go."""

    profile: str
    target: str | None
    gallery_size: int
    searches: int
    out: Path
    steps: int = 6
    rescore_candidates: int | None = None
    parameter: str = PARAMETER


def profile_value(prof: dict, key: str) -> float:
    """The profile's value of a "population.<field>" key, or fpscale's
    default where the profile leaves it unset."""
    field = population_field(key)
    return float(prof.get("population", {}).get(field, getattr(PopulationSpec(), field)))


def pick_target(prof: dict, name: str | None) -> ProfileTarget:
    """The profile's target of that name (default: its first)."""
    targets = calibration_from_dict({"targets": prof.get("targets", [])}).targets
    if not targets:
        raise ProfileError(f"profile {prof['name']!r} has no [[targets]] to fit")
    for t in targets:
        if name is None or t.name == name:
            return t
    raise ProfileError(f"profile {prof['name']!r} has no target {name!r}; it has "
                       + ", ".join(t.name for t in targets))


def trial_scenario(req: CalibrationRequest, target: ProfileTarget, value: float | None) -> Scenario:
    """The target's scenario with the profile, resized for calibration; the
    value replaces the profile's value of the fitted parameter (None: the
    profile's own)."""
    sets = [f"calibration.profile={req.profile}", f"population.gallery_size={req.gallery_size}",
            f"population.n_submissions={req.searches}", "projection.ladder=[]",
            f"metrics.target_fpir=[{target.fpir!r}]"]
    if req.rescore_candidates:
        sets.append(f"search.rescore_candidates={req.rescore_candidates}")
    sc = load_scenario(target.scenario, sets)
    if value is None:
        return sc
    d = sc.to_dict()
    d["population"][population_field(req.parameter)] = float(value)
    line = f"{req.parameter} = {float(value)!r}"
    settings = [x for x in d["calibration"]["settings"] if not x.startswith(req.parameter + " =")]
    d["calibration"]["settings"] = settings + [line]
    return scenario_from_dict(d, sc.name)


def rescored_key(summary: Summary) -> tuple[str, str]:
    """(candidate stage key, re-scored key) of a run's first re-scored backend."""
    for b in summary.backends:
        if b.rescored_from:
            return b.rescored_from, b.key
    raise ProfileError("the target's scenario does not re-score its candidates ([search] rescore)")


def fitted(req: CalibrationRequest, target: ProfileTarget) -> Parameter:
    """What the request fits and over which range: the extraction noise
    over NOISE_RANGE, the capture noise from the target's floor (the
    cited placement consistency, ``population_facts.capture_noise_floor``)
    to CAPTURE_TOP, or the unmatchable share over UNMATCHABLE_RANGE."""
    if req.parameter == PARAMETER:
        return EXTRACTION
    if req.parameter == UNMATCHABLE:
        return Parameter(UNMATCHABLE, *UNMATCHABLE_RANGE, log=False)
    if req.parameter != CAPTURE:
        raise ProfileError(f"--parameter {req.parameter}: fits {PARAMETER}, {CAPTURE} or {UNMATCHABLE}")
    from fpscale.bench.tools.population_facts import capture_noise_floor
    floor = capture_noise_floor(trial_scenario(req, target, None).population)
    if floor is None:
        raise ProfileError(f"target {target.name} ({target.scenario}): the cited placement "
                           "consistency does not bound its capture noise (its enrolment holds "
                           "nearly all of a booking however it is placed), so there is no range to fit")
    return Parameter(CAPTURE, round(floor, 4), CAPTURE_TOP)


def measure(summary: Summary, folder: Path, fpir: float, field: str = "extraction_noise") -> Trial:
    """FNIR at the target FPIR of the re-scored lists, and the candidate
    stage's share of mated searches that listed the mate; the trial's
    value is the population's ``field``."""
    cand, key = rescored_key(summary)
    row = next(b for b in summary.backends if b.key == key)
    op = next((o for o in row.metrics.operating_points if math.isclose(o.target_fpir, fpir)), None)
    z = read_npz(folder / f"searches_{cand}.npz")
    mated = z["mate"] >= 0
    recall = float((z["mate_rank"][mated] > 0).mean()) if mated.any() else float("nan")
    value = getattr(summary.scenario.population, field)
    if op is None or op.fnir is None or op.fnir.value is None:
        return Trial(value, None, None, None, None, None, recall, 0, 0, str(folder))
    r = read_npz(folder / f"searches_{key}.npz")
    rank, score = r["mate_rank"][mated], r["mate_score"][mated]
    hit = (rank >= 1) & (rank <= summary.scenario.metrics.rank) & (score >= op.threshold)
    # an unmatchable booking is missed by construction: neither stage's miss
    pop = summary.scenario.population
    apart = unmatchable_bookings(pop, 0, len(z["mate"]))[mated]
    lo, hi = op.fnir.ci95
    return Trial(value, op.fnir.value, lo, hi, op.fpir.value if op.fpir else None,
                 op.threshold, recall, int((~hit & (rank == 0) & ~apart).sum()), int((~hit).sum()),
                 str(folder), int((~hit & apart).sum()))


def run_trial(req: CalibrationRequest, target: ProfileTarget, value: float,
              progress: bool) -> Trial:
    """Run the target's scenario at one value into out/noise=<value> (the
    extraction noise) or out/capture_noise=<value>."""
    sc = trial_scenario(req, target, value)
    field = population_field(req.parameter)
    folder = req.out / f"{'noise' if req.parameter == PARAMETER else field}={value:.4f}"
    summary = run_scenario(sc, folder, overwrite=True, progress=progress)
    return measure(summary, folder, target.fpir, field)


def resolved(t: Trial, target: ProfileTarget, req: CalibrationRequest) -> Trial:
    """The trial, if its searches resolve the target FPIR; else a ProfileError."""
    if t.fnir is None:
        raise ProfileError(f"FPIR {target.fpir:g} is not resolved by {req.searches:,} searches: "
                           "give more with --searches")
    return t


def bisect(req: CalibrationRequest, target: ProfileTarget, progress: bool = True,
           param: Parameter = EXTRACTION) -> list[Trial]:
    """Trials of a bisection in log(value) (or value, for a share) over the
    parameter's range for the value whose FNIR meets the target's: FNIR
    grows with either noise and with the unmatchable share.
    The range's low end is tried first: when it misses the target no value
    in the range meets it, and that one trial is the fit (steps counts it)."""
    scale, back = (math.log, math.exp) if param.log else (float, float)
    lo, hi = scale(param.low), scale(param.high)
    trials = []
    for step in range(req.steps):
        mid = param.low if step == 0 else round(back((lo + hi) / 2), 4)
        t = resolved(run_trial(req, target, mid, progress), target, req)
        trials.append(t)
        if t.fnir <= target.fnir:
            lo = scale(mid)
        elif step == 0:
            break
        else:
            hi = scale(mid)
    return trials


def best_trial(trials: list[Trial], target: ProfileTarget) -> Trial:
    """The noisiest trial whose FNIR does not exceed the target's (the
    least flattering fit the data allow), else the least noisy trial."""
    ok = [t for t in trials if t.fnir is not None and t.fnir <= target.fnir]
    return max(ok, key=lambda t: t.value) if ok else min(trials, key=lambda t: t.value)


def other_settings(req: CalibrationRequest, target: ProfileTarget) -> str:
    """The calibrated settings besides the fitted one, as the trials run
    them (the target's scenario with the profile): "key=value, ...", with
    the quality weighting of the candidate vectors where it is on."""
    pop = trial_scenario(req, target, None).population
    out = [f"{k}={getattr(pop, population_field(k)):g}"
           for k in (PARAMETER, CAPTURE, UNMATCHABLE) if k != req.parameter]
    if pop.quality_weighting:  # the encoder's setting, named only where it is on
        out.append("population.quality_weighting=true")
    return ", ".join(out)


def fit_record(t: Trial, target: ProfileTarget, req: CalibrationRequest, command: str,
               settings: str) -> dict:
    """The [[fit]] row a profile file keeps for a trial; settings as
    other_settings gives them."""
    nan = float("nan")
    row = ProfileFit(target.name, req.parameter, t.value, req.gallery_size, req.searches,
                     *(nan if v is None else float(v) for v in (t.fnir, t.fnir_low, t.fnir_high, t.fpir)),
                     t.candidate_recall, t.misses, t.candidate_misses, command,
                     datetime.date.today().isoformat(), settings)
    return dataclasses.asdict(row)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):_}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def profile_text(prof: dict) -> str:
    """A profile as TOML. Written here because the standard library reads
    TOML but does not write it, and a profile is a fixed, flat layout."""
    lines = ["# A matcher profile of fpscale (docs/calibration.md). The [[fit]] rows are",
             "# written by `fpscale calibrate`; the rest is edited by hand.",
             f"name = {_toml_value(prof['name'])}",
             f"description = {_toml_value(prof.get('description', ''))}"]
    for table in ("population", "search"):
        if prof.get(table):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in prof[table].items()]
    for arr in ("targets", "fit"):
        for row in prof.get(arr, []):
            lines += ["", f"[[{arr}]]"] + [f"{k} = {_toml_value(v)}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


def updated_profile(prof: dict, fit: dict) -> dict:
    """The profile with the fitted value and its [[fit]] row for that target
    (replacing an earlier fit of the same target and parameter at the same N)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in prof.items()}
    out.setdefault("population", {})[population_field(fit["parameter"])] = fit["value"]
    keep = [r for r in prof.get("fit", [])
            if not (r.get("target") == fit["target"] and r.get("gallery_size") == fit["gallery_size"]
                    and r.get("parameter", PARAMETER) == fit["parameter"])]
    out["fit"] = keep + [fit]
    return out


def write_profile(path: Path, prof: dict) -> None:
    """Write a profile file atomically after checking it reads back."""
    text = profile_text(prof)
    try:
        import tomllib
        back = tomllib.loads(text)
    except Exception as e:  # a bug here must never leave a broken profile
        raise ProfileError(f"the profile would not read back ({e}); nothing written") from None
    calibration_from_dict({"targets": back.get("targets", []), "fit": back.get("fit", [])})
    write_text(path, text)


def check_request(req: CalibrationRequest) -> tuple[dict, ProfileTarget]:
    """The profile and target, with the trial scenario validated before any work."""
    prof = read_profile(req.profile)
    target = pick_target(prof, req.target)
    try:
        trial_scenario(req, target, None)
    except ScenarioError as e:
        raise ProfileError(f"target {target.name} ({target.scenario}): {e}") from None
    return prof, target


def det_near(summary: Summary, key: str, fpir: float) -> list[tuple[float, float, float]]:
    """(threshold, FNIR, FPIR) of a backend's DET within a decade of fpir."""
    det = next(b for b in summary.backends if b.key == key).metrics.det
    return [(t, fn, fp) for t, fn, fp in zip(det.threshold, det.fnir, det.fpir)
            if fp is not None and fpir / 10 <= fp <= min(1.0, fpir * 10)]


@dataclass(frozen=True)
class Outcome:
    """What a calibration ran: the parameter, its trials, the one chosen,
    and whether it measured the profile's own value at the published N."""

    param: Parameter
    trials: list[Trial]
    chosen: Trial
    confirm: bool = False


def calibration_report(prof: dict, target: ProfileTarget, out: Outcome, summary: Summary) -> str:
    """The calibration report: fitted parameters beside the population they
    produce, target against measured, the trials and the DET near the point."""
    from fpscale.bench.report.calibration import det_lines, facts_lines, profile_lines, trials_lines
    from fpscale.bench.tools.population_facts import population_facts
    param, chosen = out.param, out.chosen
    cal = calibration_from_dict(record(prof))  # the profile with this fit, not the trial's
    head = [f"# Calibration of {prof['name']} to target {target.name}", "",
            f"Target: FNIR {target.fnir:g} at FPIR {target.fpir:g} on a gallery of "
            f"{target.gallery_size:,} ({target.source}); replicated by scenario "
            f"`{target.scenario}`, here at {summary.scenario.population.gallery_size:,} with "
            f"{summary.scenario.population.n_submissions:,} searches.", "",
            f"Chosen: {param.label} {chosen.value:g}: FNIR {_fmt(chosen.fnir)} "
            f"[{_fmt(chosen.fnir_low)}, {_fmt(chosen.fnir_high)}] at FPIR {_fmt(chosen.fpir)}; "
            f"the candidate stage listed the mate in {_listed(chosen, summary)} of mated "
            f"searches; {chosen.candidate_misses} of its {chosen.misses} misses had no mate among "
            "the re-scored candidates" + (f" and {chosen.unmatchable} were unmatchable bookings "
                                          "(missed by construction)" if chosen.unmatchable else "")
            + ".", "", verdict(chosen, target, param, out.confirm)]
    _, key = rescored_key(summary)
    return "\n".join(head + profile_lines(cal) + facts_lines(population_facts(summary.scenario.population))
                     + trials_lines(out.trials, chosen, param.label)
                     + det_lines(det_near(summary, key, target.fpir))) + "\n"


def verdict(t: Trial, target: ProfileTarget, param: Parameter = EXTRACTION,
            confirm: bool = False) -> str:
    """One line: whether the trial meets the target, and what stands in the
    way if not; at the published N (confirm), whether the published FNIR
    lies inside the trial's 95% interval."""
    own = t.misses - t.unmatchable
    where = ("the unmatchable bookings (population.unmatchable_share)" if t.unmatchable * 2 > t.misses
             else "the candidate stage (mates not among the re-scored candidates)"
             if t.candidate_misses * 2 > own else "the 1:1 re-scoring (mates scored below T)")
    if t.fnir is None:
        return f"FPIR {target.fpir:g} NOT RESOLVED at {param.label} {t.value:g}: too few non-mated searches."
    if confirm:
        head = (f"At the published N, {param.label} {t.value:g}: FNIR {_fmt(t.fnir)} "
                f"[{_fmt(t.fnir_low)}, {_fmt(t.fnir_high)}]; the published {target.fnir:g} lies ")
        if t.fnir_low <= target.fnir <= t.fnir_high:
            return head + "inside the 95% interval."
        side = (f"above it; most misses are in {where}" if t.fnir_low > target.fnir
                else "below it: the profile misses fewer mates than the published matcher")
        return head + f"OUTSIDE the 95% interval, {side}."
    if t.fnir <= target.fnir:
        low = (f" This is the range's low end, {param.low:g}, the most flattering value: every "
               "value tried above it missed the target, or none was (--steps 1)."
               if t.value == param.low else "")
        return (f"Target met at this gallery size: FNIR {_fmt(t.fnir)} <= {target.fnir:g} "
                f"(only a run at the published N, such as --confirm, reproduces the point).{low}")
    return (f"TARGET NOT REACHED: FNIR {_fmt(t.fnir)} > {target.fnir:g} at {param.label} "
            f"{t.value:g} (the search does not go below {param.low:g}); most misses are in "
            f"{where}.")


def _listed(t: Trial, summary: Summary) -> str:
    # the candidate stage's share of mated searches listing the mate, with its interval
    mated = next(b for b in summary.backends if b.rescored_from).metrics.mated
    if not mated or not math.isfinite(t.candidate_recall):
        return "n/a"
    lo, hi = binomial_ci(round(t.candidate_recall * mated), mated)
    return f"{_fmt(t.candidate_recall)} [{_fmt(float(lo))}, {_fmt(float(hi))}]"


def _fmt(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def calibrate(req: CalibrationRequest, command: str, progress: bool = True,
              confirm: bool = False) -> tuple[dict, str]:
    """Fit (or, with confirm, measure at the target's N with the profile's
    value), write out/calibration.md and return (updated profile, report)."""
    from fpscale.bench.store.summary import read_summary
    prof, target = check_request(req)
    param = fitted(req, target)
    if confirm:
        req = dataclasses.replace(req, gallery_size=target.gallery_size)
        value = profile_value(prof, param.key)
        trials = [resolved(run_trial(req, target, value, progress), target, req)]
    else:
        trials = bisect(req, target, progress, param)
    chosen = best_trial(trials, target) if not confirm else trials[0]
    new = updated_profile(prof, fit_record(chosen, target, req, command, other_settings(req, target)))
    summary = read_summary(Path(chosen.folder))
    text = calibration_report(new, target, Outcome(param, trials, chosen, confirm), summary)
    write_text(req.out / "calibration.md", text)
    write_text(req.out / f"{prof['name']}.toml", profile_text(new))
    return new, text
