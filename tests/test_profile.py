"""Matcher profiles, scenario overrides (--set), the synthesis knobs a
profile sets, and the calibration's bisection and profile writing."""

import dataclasses
import math
import tomllib

import numpy as np
import pytest
from scipy import stats

from fpscale.bench.cli import main
from fpscale.bench.profile import PROFILES_DIR, ProfileError, read_profile
from fpscale.bench.scenario import ScenarioError, apply_overrides, load_scenario, scenario_from_dict
from fpscale.bench.tools import calibrate as cal
from fpscale.synth.impressions import minutiae
from fpscale.synth.population import PopulationSpec, capture_qualities

SHIPPED = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def test_shipped_profiles_read_and_name_their_scenarios():
    assert {"best-2012", "median-2012", "ident-2004"} <= set(SHIPPED)
    for name in SHIPPED:
        prof = read_profile(name)
        for t in prof["targets"]:
            sc = load_scenario(t["scenario"])
            assert sc.calibration.profile in SHIPPED
            assert sc.population.gallery_size == t["gallery_size"]  # replicated at the published N
            assert sc.search.candidates == 100 and sc.search.rescore
            assert t["fpir"] in sc.metrics.target_fpir


def test_set_overrides_keys_and_is_validated():
    sc = load_scenario("default", ["population.seed=99", "search.candidates=30",
                                   "metrics.target_fpir=[0.05]"])
    assert (sc.population.seed, sc.search.candidates, sc.metrics.target_fpir) == (99, 30, (0.05,))
    with pytest.raises(ScenarioError, match="gallery_size"):
        load_scenario("default", ["population.gallery_size=-5"])
    with pytest.raises(ScenarioError, match="KEY=VALUE"):
        load_scenario("default", ["population.seed"])
    with pytest.raises(ScenarioError, match="not a table"):
        load_scenario("default", ["name.x=1"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=text with spaces"]) == {"a": {"b": 1, "c": "text with spaces"}}


def test_profile_sets_its_keys_and_refuses_a_scenario_that_sets_them():
    sc = load_scenario("frif-class-a")
    prof = read_profile(sc.calibration.profile)
    for k, v in prof["population"].items():
        assert getattr(sc.population, k) == v
    assert sc.search.rescore_matcher == prof["search"]["rescore_matcher"]
    with pytest.raises(ScenarioError, match="profile 'best-2012' sets it"):
        load_scenario("frif-class-a", ["population.extraction_noise=0.9"])
    med = load_scenario("frif-class-a", ["calibration.profile=median-2012"])
    assert med.population.extraction_noise == read_profile("median-2012")["population"]["extraction_noise"]
    bare = load_scenario("frif-class-a", ["calibration.profile=none", "population.dim=64"])
    assert bare.calibration.profile == "" and bare.population.dim == 64
    with pytest.raises(ScenarioError, match="no such profile .*best-2012"):
        load_scenario("frif-class-a", ["calibration.profile=best-2099"])


def test_resolved_scenario_round_trips_and_cannot_misstate_its_profile():
    sc = load_scenario("frif-class-a")
    back = scenario_from_dict(sc.to_dict(), sc.name)
    assert back == sc and back.fingerprint() == sc.fingerprint()
    d = sc.to_dict()
    d["population"]["extraction_noise"] = 0.93  # values no longer what the record says
    with pytest.raises(ScenarioError, match="does not match"):
        scenario_from_dict(d, sc.name)
    # provenance (fits) is not an input of the results; the profile's name is
    d = sc.to_dict()
    d["calibration"]["description"] = "edited"
    assert scenario_from_dict(d, sc.name).fingerprint() == sc.fingerprint()
    med = load_scenario("frif-class-a", ["calibration.profile=median-2012"])
    assert med.fingerprint() != sc.fingerprint()


def test_extraction_noise_scales_misses_and_spurious_minutiae():
    # rolled quality 1: about 8% missed and 1.8 spurious per capture at noise 1,
    # so fewer minutiae as the noise grows, and the count at 1 is the default
    means = [np.mean([len(minutiae(5, i, 2, 1, "rolled", 1, noise=s)) for i in range(300)])
             for s in (0.3, 1.0, 2.5)]
    assert means[0] > means[1] > means[2]
    a = minutiae(5, 3, 2, 1, "plain", 3)
    assert np.array_equal(a, minutiae(5, 3, 2, 1, "plain", 3, noise=1.0))


def test_extraction_noise_scales_position_jitter():
    # the same capture with the noise near zero and at 2: minutiae that
    # survive in both are at most the jitter apart from the clean ones
    def jitter(s):
        clean = minutiae(9, 11, 2, 1, "rolled", 5, noise=0.05)
        noisy = minutiae(9, 11, 2, 1, "rolled", 5, noise=s)
        d = np.sqrt(((clean[:, None, :2] - noisy[None, :, :2]) ** 2).sum(-1))
        return np.median(d.min(1))
    assert jitter(2.0) > 2 * jitter(0.5)


def test_quality_copula_keeps_the_shares_and_correlates_a_persons_fingers():
    n = 20000
    ids = np.repeat(np.arange(n), 2)
    fingers = np.tile([2, 7], n)
    enc = np.ones(2 * n, dtype=np.int64)
    shares = (0.25, 0.35, 0.22, 0.12, 0.06)
    for corr in (0.0, 0.6):
        spec = PopulationSpec(seed=3, booking_quality=shares, quality_correlation=corr)
        q = capture_qualities(spec, ids, fingers, enc, gallery=False)
        counts = np.bincount(q, minlength=6)[1:]
        assert stats.chisquare(counts, np.array(shares) * len(q)).pvalue > 1e-3
        r = np.corrcoef(q[0::2], q[1::2])[0, 1]
        if corr == 0.0:
            assert abs(r) < 0.03
        else:
            assert r > 0.35
    # quality is a person's across encounters too: enrolment against booking
    spec = PopulationSpec(seed=3, quality_correlation=0.6)
    g = capture_qualities(spec, np.arange(n), np.full(n, 2), np.zeros(n, np.int64), gallery=True)
    b = capture_qualities(spec, np.arange(n), np.full(n, 2), np.ones(n, np.int64), gallery=False)
    assert np.corrcoef(g, b)[0, 1] > 0.35


def _target(fnir=0.01):
    return cal.ProfileTarget("A", "frif-class-a", 1_600_000, 0.001, fnir, "s")


def test_bisection_finds_the_noise_where_fnir_crosses_the_target(monkeypatch, tmp_path):
    # a known monotone FNIR(noise) = 0.04 noise^2: the target 0.0256 is at 0.8
    def fake(req, target, noise, progress):
        f = 0.04 * noise ** 2
        return cal.Trial(noise, f, f / 2, f * 2, 0.001, 0.1, 0.999, 0, 1, str(tmp_path))
    monkeypatch.setattr(cal, "run_trial", fake)
    req = cal.CalibrationRequest("best-2012", None, 1000, 500, tmp_path, steps=12)
    trials = cal.bisect(req, _target(0.0256))
    best = cal.best_trial(trials, _target(0.0256))
    assert best.fnir <= 0.0256 and best.value == pytest.approx(0.8, rel=2e-3)
    assert all(t.fnir > 0.0256 for t in trials if t.value > best.value)
    assert trials[0].value == cal.NOISE_RANGE[0] and len(trials) == 12  # the floor first
    # a target below what the floor gives: one trial, at the floor, is the fit
    trials = cal.bisect(req, _target(0.001))
    assert [t.value for t in trials] == [cal.NOISE_RANGE[0]]
    best = cal.best_trial(trials, _target(0.001))
    assert best.value == cal.NOISE_RANGE[0]
    assert cal.verdict(best, _target(0.001)).startswith("TARGET NOT REACHED")


def test_the_unmatchable_share_is_bisected_on_a_linear_scale_from_zero(monkeypatch, tmp_path):
    # FNIR(share) = 0.015 + 0.985 share, as a tail adds to a matcher's own
    # misses: the target 0.05 is at share 0.035532
    def fake(req, target, share, progress):
        f = 0.015 + 0.985 * share
        return cal.Trial(share, f, f / 2, f * 2, 0.001, 0.1, 0.999, 0, 1, str(tmp_path))
    monkeypatch.setattr(cal, "run_trial", fake)
    req = cal.CalibrationRequest("ident-2004", None, 1000, 500, tmp_path, steps=14,
                                 parameter=cal.UNMATCHABLE)
    param = cal.fitted(req, _target(0.05))
    assert (param.low, param.high, param.log) == (0.0, 0.2, False)
    trials = cal.bisect(req, _target(0.05), param=param)
    assert trials[0].value == 0.0 and trials[1].value == pytest.approx(0.1)  # linear midpoint
    best = cal.best_trial(trials, _target(0.05))
    assert best.value == pytest.approx(0.035 / 0.985, abs=2e-4) and best.fnir <= 0.05
    # a matcher already past the target at no tail: one trial, not reached
    trials = cal.bisect(req, _target(0.01), param=param)
    assert [t.value for t in trials] == [0.0]
    assert cal.verdict(trials[0], _target(0.01), param).startswith("TARGET NOT REACHED")


def test_profile_text_reads_back_and_fit_replaces_its_own_row():
    for name in SHIPPED:
        prof = read_profile(name)
        assert tomllib.loads(cal.profile_text(prof)) == prof
    prof = read_profile("best-2012")
    t = cal.Trial(0.42, 0.0003, 0.0001, 0.0009, 0.001, 0.05, 0.9991, 1, 2, "x")
    req = cal.CalibrationRequest("best-2012", None, 50_000, 6000, None)
    row = cal.fit_record(t, _target(0.0002), req, "fpscale calibrate best-2012",
                         "population.capture_noise=0.2329, population.unmatchable_share=0")
    new = cal.updated_profile(cal.updated_profile(prof, row), row)
    assert new["population"]["extraction_noise"] == 0.42
    assert [r["gallery_size"] for r in new["fit"]].count(50_000) == 1
    assert tomllib.loads(cal.profile_text(new)) == new
    assert prof["population"]["extraction_noise"] != 0.42  # the original is not changed


def test_a_fit_row_records_the_other_settings_its_trials_ran_with(monkeypatch):
    # fitting the capture noise: the extraction noise and the unmatchable
    # share are what the profile sets (or fpscale's default), as the trial runs them
    req = cal.CalibrationRequest("ident-2004", None, 50_000, 6000, None, parameter=cal.CAPTURE)
    target = cal.pick_target(read_profile("ident-2004"), None)
    assert cal.other_settings(req, target) == ("population.extraction_noise=0.5355, "
                                               "population.unmatchable_share=0.041, "
                                               "population.quality_weighting=true")
    best = cal.CalibrationRequest("best-2012", None, 50_000, 6000, None, parameter=cal.UNMATCHABLE)
    assert cal.other_settings(best, _target()) == ("population.extraction_noise=0.5355, "
                                                   "population.capture_noise=0.2329, "
                                                   "population.quality_weighting=true")
    # the encoder's quality weighting is named where a profile turns it on
    weighted = load_scenario("frif-class-a", ["calibration.profile=none",
                                              "population.quality_weighting=true"])
    monkeypatch.setattr(cal, "trial_scenario", lambda *a: weighted)
    assert cal.other_settings(best, _target()) == ("population.extraction_noise=1, "
                                                   "population.capture_noise=1, "
                                                   "population.quality_weighting=true")
    # a row without them (written before they were kept) still reads, and the
    # report says they were not recorded; any other extra key is refused
    from fpscale.bench.profile import calibration_from_dict
    from fpscale.bench.report.calibration import profile_lines
    rows = read_profile("best-2012")["fit"]
    old = {k: v for k, v in rows[0].items() if k != "settings"}
    c = calibration_from_dict({"profile": "best-2012", "fit": [old, rows[-1]]})
    assert [f.settings for f in c.fit] == ["", rows[-1]["settings"]]
    text = "\n".join(profile_lines(c))
    assert "| not recorded |" in text and f"| {rows[-1]['settings']} |" in text
    with pytest.raises(ProfileError, match="may have settings"):
        calibration_from_dict({"fit": [dict(old, seed=1)]})


def test_calibrate_refuses_bad_requests_in_one_line(capsys):
    for argv, needle in ((["calibrate", "no-such"], "no such profile"),
                         (["calibrate", "best-2012", "--target", "Z"], "no target 'Z'"),
                         (["calibrate", "best-2012", "--gallery-size", "5"], "--gallery-size 5")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fpscale: error:") and needle in err and "\n" not in err


def test_run_set_reaches_the_run(tmp_path, tiny, write_toml, capsys):
    path = write_toml(tmp_path / "s.toml", tiny(projection__ladder=[]))
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "population.n_submissions=120", "--set", "search.candidates=7"]) == 0
    from fpscale.bench.store.summary import read_summary
    s = read_summary(tmp_path / "r")
    assert s.scenario.population.n_submissions == 120 and s.scenario.search.candidates == 7
    assert main(["run", str(path), "--out", str(tmp_path / "r2"), "--set", "search.nothing=1"]) == 2
    assert "unknown key 'nothing'" in capsys.readouterr().err


def test_calibrate_end_to_end_writes_report_and_fitted_profile_only_in_out(tmp_path, capsys):
    shipped = (PROFILES_DIR / "best-2012.toml").read_bytes()
    out = tmp_path / "cal"
    assert main(["calibrate", "best-2012", "--gallery-size", "1500", "--searches", "1500",
                 "--steps", "1", "--rescore-candidates", "3", "--out", str(out), "--quiet"]) == 0
    assert (PROFILES_DIR / "best-2012.toml").read_bytes() == shipped  # no --write: untouched
    fitted = tomllib.loads((out / "best-2012.toml").read_text())
    shipped_rows = tomllib.loads(shipped.decode()).get("fit", [])
    assert fitted["fit"][:-1] == [r for r in shipped_rows if r["gallery_size"] != 1500]
    fit = fitted["fit"][-1]
    assert fit["gallery_size"] == 1500 and fit["searches"] == 1500 and fit["target"] == "A"
    assert fitted["population"]["extraction_noise"] == fit["value"] == cal.NOISE_RANGE[0]  # one step: the floor
    assert fit["fnir_low"] <= fit["fnir"] <= fit["fnir_high"] and 0 < fit["candidate_recall"] <= 1
    assert 0 <= fit["candidate_misses"] <= fit["misses"]
    report = (out / "calibration.md").read_text()
    for needle in ("minutiae mean", "pattern class", "Booking quality shares", "DET around the point",
                   "FRIF TE E1N", "extraction noise", "Placement (capture noise 0.2329)",
                   "median probability 0.95"):
        assert needle in report
    assert "unmatchable bookings (`population.unmatchable_share`)" not in report  # best-2012 has none
    # the trial's own summary records the noise it ran with
    from fpscale.bench.store.summary import read_summary
    s = read_summary(out / f"noise={fit['value']:.4f}")
    assert s.scenario.population.extraction_noise == fit["value"]
    assert f"population.extraction_noise = {fit['value']!r}" in s.scenario.calibration.settings
    row = next(b for b in s.backends if b.rescored_from)
    (op,) = [o for o in row.metrics.operating_points if o.target_fpir == 0.001]
    assert fit["misses"] == op.fnir.count  # the miss split counts what FNIR counts


def test_calibrate_fits_the_capture_noise_from_the_cited_floor_up(tmp_path, capsys):
    from fpscale.bench.tools.population_facts import capture_noise_floor
    out = tmp_path / "cal"
    assert main(["calibrate", "ident-2004", "--parameter", "population.capture_noise",
                 "--gallery-size", "1500", "--searches", "1500", "--steps", "2",
                 "--rescore-candidates", "3", "--out", str(out), "--quiet"]) == 0
    fitted = tomllib.loads((out / "ident-2004.toml").read_text())
    fit = fitted["fit"][-1]
    assert fit["parameter"] == "population.capture_noise" and fit["gallery_size"] == 1500
    assert fitted["population"]["capture_noise"] == fit["value"]
    # the extraction noise stays the profile's; earlier rows of the other parameter stay
    assert fitted["population"]["extraction_noise"] == read_profile("ident-2004")["population"]["extraction_noise"]
    assert [r for r in fitted["fit"] if r["gallery_size"] != 1500] == read_profile("ident-2004")["fit"]
    req = cal.CalibrationRequest("ident-2004", None, 1500, 1500, out, parameter=cal.CAPTURE)
    floor = capture_noise_floor(cal.trial_scenario(req, cal.pick_target(read_profile("ident-2004"), None),
                                                   None).population)
    runs = sorted(float(p.name.split("=")[1]) for p in out.glob("capture_noise=*"))
    # the floor first; at 1,500 records it meets FNIR 0.05, so the second trial is the midpoint
    assert runs == [pytest.approx(round(floor, 4), abs=1e-4),
                    pytest.approx(math.sqrt(round(floor, 4) * cal.CAPTURE_TOP), rel=1e-3)]
    from fpscale.bench.store.summary import read_summary
    s = read_summary(out / f"capture_noise={fit['value']:.4f}")
    assert s.scenario.population.capture_noise == fit["value"]
    assert f"population.capture_noise = {fit['value']!r}" in s.scenario.calibration.settings
    report = (out / "calibration.md").read_text()
    assert f"Chosen: capture noise {fit['value']:g}" in report and "| capture noise | FNIR" in report
    # its confirm row at 6M was measured with unmatchable bookings, and the report says what that row counts
    assert "count them among the misses but not among the candidate stage's" in report
    # a target whose enrolment holds nearly all of a booking has no floor: refused in one line
    capsys.readouterr()
    assert main(["calibrate", "best-2012", "--target", "C", "--parameter", "population.capture_noise",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no range to fit" in err and "\n" not in err and not (tmp_path / "c").exists()


def test_verdict_names_where_the_misses_are():
    t = cal.Trial(0.5, 0.003, 0.001, 0.006, 0.001, 0.04, 0.998, 8, 9, "x")
    v = cal.verdict(t, _target(0.0002))
    assert v.startswith("TARGET NOT REACHED") and "candidate stage" in v
    t = cal.Trial(0.5, 0.003, 0.001, 0.006, 0.001, 0.04, 0.998, 1, 9, "x")
    assert "1:1 re-scoring" in cal.verdict(t, _target(0.0002))
    t = cal.Trial(0.7, 0.0001, 0.0, 0.0006, 0.001, 0.04, 0.999, 0, 1, "x")
    assert cal.verdict(t, _target(0.0002)).startswith("Target met")
    # at the published N the question is whether the interval holds the published value
    t = cal.Trial(0.75, 0.0505, 0.0417, 0.0611, 0.0008, 0.04, 0.955, 89, 99, "x")
    placement = cal.Parameter(cal.CAPTURE, 0.161, cal.CAPTURE_TOP)
    assert "lies inside the 95% interval" in cal.verdict(t, _target(0.05), placement, confirm=True)
    over = cal.verdict(t, _target(0.0002), confirm=True)
    assert "OUTSIDE the 95% interval, above it" in over and "candidate stage" in over
    under = cal.verdict(t, _target(0.1), confirm=True)
    assert "OUTSIDE the 95% interval, below it" in under and "candidate stage" not in under
    none = cal.Trial(0.75, None, None, None, None, None, 0.955, 0, 0, "x")
    assert "NOT RESOLVED" in cal.verdict(none, _target(0.05), confirm=True)
    # met only at the low end: said to be the most flattering value
    low = cal.Trial(cal.NOISE_RANGE[0], 0.0001, 0.0, 0.0006, 0.001, 0.04, 0.999, 0, 1, "x")
    assert "most flattering" in cal.verdict(low, _target(0.0002))


def test_recorded_command_leaves_out_where_files_went():
    from fpscale.bench.cli import _recorded_args
    assert _recorded_args(["calibrate", "best-2012", "--out", "/tmp/x", "--steps", "4", "--write",
                           "--out=/y", "--quiet"]) == ["calibrate", "best-2012", "--steps", "4"]


def _profile_fnir(tmp_path, scenario: str, fpir: float):
    """FNIR at `fpir` after re-scoring, with its Wilson interval, of the
    scenario (its own profile) at 30,000 records and 1,500 searches."""
    from fpscale.bench.store.summary import read_summary
    out = tmp_path / scenario
    assert main(["run", scenario, "--out", str(out), "--quiet",
                 "--set", "population.gallery_size=30000", "--set", "population.n_submissions=1500",
                 "--set", "search.candidates=20", "--set", "search.rescore_candidates=20",
                 # frif-class-a re-scores poor searches 2,000 deep: about a minute here
                 "--set", "search.rescore_poor_candidates=0",
                 "--set", "search.chunk_size=10000", "--set", "projection.ladder=[]"]) == 0
    row = next(b for b in read_summary(out).backends if b.rescored_from)
    (op,) = [o for o in row.metrics.operating_points if o.target_fpir == fpir]
    return op.fnir


def test_profiles_are_ordered_as_published_at_small_n(tmp_path):
    """best-2012 <= median-2012 < ident-2004 in FNIR, each on its own target's
    scenario at 30,000 records (FPIR 0.01: 10 of about 1,000 non-mated
    searches; at 5,000 best-2012 misses none of 494 mated searches and
    ident-2004 4 of 495, too few to order beyond the intervals).
    median-2012 shares every setting of best-2012 (the same captures, and
    both extraction-noise fits one step above that floor, docs/calibration.md),
    so the two are equal, not ordered: the first inequality holds with
    equality."""
    best, median = (load_scenario("frif-class-a", [f"calibration.profile={p}"]) for p in
                    ("best-2012", "median-2012"))
    assert best.population == median.population and best.search == median.search
    b = _profile_fnir(tmp_path, "frif-class-a", 0.01)
    i = _profile_fnir(tmp_path, "ident-2004", 0.01)
    assert b.ci95[1] < i.ci95[0], (b, i)  # ordered beyond their 95% intervals


def test_default_runs_best_2012_and_profile_none_gives_the_earlier_default():
    sc = load_scenario("default")
    assert sc.calibration.profile == "best-2012"
    assert (sc.population.dim, sc.population.bits, sc.search.rescore_matcher) == (256, 256, "mcc")
    own = load_scenario("default", ["calibration.profile=none"])
    assert not own.calibration.profile
    assert own.population == dataclasses.replace(sc.population, dim=64, bits=128, extraction_noise=1.0,
                                                 capture_noise=1.0, quality_correlation=0.0,
                                                 quality_weighting=False)
    assert own.search == dataclasses.replace(sc.search, rescore_matcher="paired")


def test_unmatchable_misses_are_neither_stages_in_a_verdict():
    # 100 misses: 72 unmatchable bookings, 26 unlisted, 2 listed
    t = cal.Trial(0.036, 0.051, 0.042, 0.062, 0.0007, 0.3, 0.95, 26, 100, "x", 72)
    param = cal.Parameter(cal.UNMATCHABLE, *cal.UNMATCHABLE_RANGE, log=False)
    assert "unmatchable bookings" in cal.verdict(t, _target(0.01), param, confirm=True)
    # 50 misses, 20 unmatchable: of the matcher's own 30, 26 are the candidate stage's
    t = cal.Trial(0.036, 0.025, 0.017, 0.037, 0.0007, 0.3, 0.95, 26, 50, "x", 20)
    assert "candidate stage" in cal.verdict(t, _target(0.01), param, confirm=True)


def test_a_confirm_reads_an_unset_parameter_as_fpscales_default():
    best = read_profile("best-2012")
    assert cal.profile_value(best, cal.UNMATCHABLE) == 0.0  # not set: no unmatchable bookings
    assert cal.profile_value(best, cal.CAPTURE) == best["population"]["capture_noise"]
    assert cal.profile_value(read_profile("ident-2004"), cal.UNMATCHABLE) > 0
