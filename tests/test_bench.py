import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fpscale.bench.cli import main
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import ScenarioError, load_scenario, scenario_from_dict
from fpscale.bench.store.files import ResultsError, read_npz
from fpscale.bench.store.summary import read_summary, to_json_dict

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("run") / "tiny"
    sc = scenario_from_dict(tiny())
    summary = run_scenario(sc, out, progress=False)
    return sc, out, summary


def test_run_writes_complete_results(tiny_run):
    sc, out, summary = tiny_run
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["fingerprint"] == sc.fingerprint()
    for f in ("summary.json", "report.md", "report.html", "plots/det.png", "plots/cmc.png",
              "plots/fpir_vs_n_one.png", "plots/heldout_two_index.png", "truth.npz"):
        assert (out / f).is_file(), f
    assert not list(out.glob(".*.tmp"))
    # the settings that make matching hard are shown beside the results
    pop = sc.population
    assert (f"extraction noise {pop.extraction_noise:g}, capture noise {pop.capture_noise:g}"
            in (out / "report.md").read_text())
    s = read_summary(out)
    assert [b.key for b in s.backends] == ["numba-flat", "faiss-Flat", "numba-hamming"]
    for b in s.backends:
        assert b.timings.throughput_searches_per_s > 0
        assert b.memory.actual_bytes > 0
    # what was written is what the run returned
    assert to_json_dict(s.backends[0].metrics) == to_json_dict(summary.backends[0].metrics)


def test_metrics_recomputable_from_the_per_search_table(tiny_run):
    sc, out, summary = tiny_run
    t = read_npz(out / "searches_numba-flat.npz")
    mated = t["mate"] >= 0
    r1 = np.mean(t["mate_rank"][mated] == 1)
    b = summary.backends[0].metrics
    assert b.rank1_hit_rate.value == pytest.approx(r1)
    op = b.operating_points[0]
    fp = np.mean(t["cand_scores"][~mated, 0] >= op.threshold)
    assert op.fpir.value == pytest.approx(fp)


def test_numba_exact_and_faiss_flat_give_the_same_metrics(tiny_run):
    _, _, summary = tiny_run
    a, b = summary.backends[0].metrics, summary.backends[1].metrics
    assert a.rank1_hit_rate == b.rank1_hit_rate
    assert a.cmc == pytest.approx(b.cmc)


def test_projection_checks_itself_on_the_largest_rung(tiny_run):
    _, out, summary = tiny_run
    p = summary.projection["two_index"]
    assert p.rungs == [40, 80, 400, 800]
    # every (search, non-mate) pair of the largest rung is histogrammed once
    mate = read_npz(out / "truth.npz")["mate"]
    nonmates = sum(800 - (0 <= m < 800) for m in mate)
    assert p.pooled_tail.pairs == nonmates
    assert p.searches == int(((mate < 0) | (mate >= 800)).sum())
    assert [h.threshold for h in p.held_out] == [a.threshold for a in p.at_target]
    for h in p.held_out:
        assert (h.n_fit, h.n_test) == (80, 800)
        assert h.measured.of == p.searches
        for c in h.checks:
            if c.model.startswith("shift") and c.predicted.value is not None:
                lo, hi = c.predicted.ci95
                assert c.inside == (lo <= h.measured.value <= hi)
    lad = read_npz(out / "ladder_two_index.npz")
    never = lad["mate"] < 0  # non-mated at every rung
    for a in p.at_target:
        assert a.measured[-1].value == pytest.approx(
            next(h for h in p.held_out if h.threshold == a.threshold).measured.value)
        # over the same searches, FPIR grows with N at a fixed threshold
        share = (lad["top_nonmate"][never] >= a.threshold).mean(axis=0)
        assert np.all(np.diff(share) >= 0)
        assert all(m.count <= m.of for m in a.measured)
        # 1,000,000 is 3.1 decades past 800: not given, whatever the model
        assert a.fpir.value is None and a.fpir.note.startswith("not resolved")
        assert 0 <= a.fpir_upper_bound <= 1


def test_same_seed_same_numbers_across_chunk_sizes_and_threads(tmp_path, tiny_run, tiny):
    _, out, summary = tiny_run
    d = tiny(search__chunk_size=257, search__probe_batch=61, search__threads=1)
    other = run_scenario(scenario_from_dict(d), tmp_path / "b", progress=False)
    assert other.scenario.search.threads == 1 and summary.scenario.search.threads == 0
    for x, y in zip(summary.backends, other.backends):
        assert x.metrics == y.metrics
    assert to_json_dict(summary.projection) == to_json_dict(other.projection)
    for f in ("searches_numba-flat.npz", "searches_numba-hamming.npz", "ladder_one.npz"):
        assert (out / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_refuses_other_scenario_results_unless_overwrite(tmp_path, tiny_run, tiny):
    _, out, _ = tiny_run
    other = scenario_from_dict(tiny(population__seed=8))
    with pytest.raises(ResultsError, match="another scenario"):
        run_scenario(other, out, progress=False)


@pytest.mark.parametrize("over,needle", [
    ({"search__candidates": 0}, r"\[search\] candidates = 0"),
    ({"search__backends": [{"name": "annoy"}]}, "unknown backend 'annoy'"),
    ({"search__backends": [{"name": "faiss:Flat", "colour": 1}]}, "unknown key 'colour'"),
    ({"population__mated_share": 2.0}, "mated_share"),
    ({"population__gallery_size": "big"}, "gallery_size"),
    ({"projection__ladder": [100, 50, 800]}, "increasing"),
    ({"projection__ladder": [100, 200, 5000]}, "must not exceed"),
    ({"metrics__target_fpir": [0]}, "target_fpir"),
    ({"target__mated_share": -1}, r"\[target\] mated_share"),
    ({"search__rescore_matcher": "bozorth"}, r"\[search\] rescore_matcher = 'bozorth'"),
    ({"target__bookings_per_person": 0.5}, r"\[target\] bookings_per_person"),
    ({"projection__max_decades": float("nan")}, r"\[projection\] max_decades"),
    ({"projection__scores": "cosines"}, r"\[projection\] scores.*allowed: vectors, codes"),
    ({"projection__scores": "codes", "population__bits": 20480},
     r"\[projection\] scores.*fewer than 40000 bits; these records have 40960"),
])
def test_scenario_errors_name_the_key(over, needle, tiny):
    with pytest.raises(ScenarioError, match=needle):
        scenario_from_dict(tiny(**over))


def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys, tiny, write_toml):
    bad = tmp_path / "bad.toml"
    bad.write_text("[population\nseed = 1\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid TOML" in err[0]
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    unwritable = tmp_path / "file"
    unwritable.write_text("x")
    ok = write_toml(tmp_path / "ok.toml", tiny())
    assert main(["run", str(ok), "--out", str(unwritable / "sub"), "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_shipped_scenarios_validate():
    for name in ("default", "scomm-fy2011", "ident-2024"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        assert sc.target.gallery_size >= 100_000_000


def test_console_script_help_and_version():
    r = subprocess.run([sys.executable, "-m", "fpscale.bench.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("fpscale ")
    r = subprocess.run([sys.executable, "-m", "fpscale.bench.cli", "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--out" in r.stdout


def test_project_to_another_target(tiny_run, capsys):
    _, out, summary = tiny_run
    assert main(["project", str(out), "--gallery-size", "8000", "--searches-per-year", "1e6",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == json.loads((out / "projection_8000.json").read_text())
    assert got["target"]["gallery_size"] == 8000 and got["target"]["searches_per_year"] == 1e6
    for fs, p in summary.projection.items():
        q = got["projection"][fs]
        for a, b in zip(p.at_target, q["at_target"]):
            assert a.threshold == b["threshold"]
            # same ladder, smaller N: the independence bound cannot grow
            assert b["fpir_upper_bound"] <= a.fpir_upper_bound
            # one decade past the largest rung: given where a model passed the check
            assert (b["fpir"]["value"] is not None) == (q["model"] != "none")
    assert main(["project", str(out), "--gallery-size", "8000", "--thresholds", "0.9,1.1"]) == 0
    text = capsys.readouterr().out
    assert "T = 0.9000" in text and "T = 1.1000" in text
    assert main(["project", str(out), "--thresholds", "0.9,nan"]) == 2


def test_coverage_counts_each_models_held_out_checks(tiny_run, capsys, tmp_path):
    _, out, summary = tiny_run
    assert main(["coverage", str(out), str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["finger_set"] for r in got["rows"]] == list(summary.projection) * 2
    for r in got["rows"][:len(summary.projection)]:
        p = summary.projection[r["finger_set"]]
        assert r["headline"] == p.model
        for stage, held in (("final", p.held_out), ("selection", p.selection)):
            for model, (inside, of) in r["checks"][stage].items():
                mine = [c.inside for h in held for c in h.checks if c.model == model]
                assert (inside, of) == (sum(mine), len(mine)), (stage, model)
    # the same folder twice: every total is twice one folder's
    for stage, per_model in got["totals"].items():
        for model, (inside, of) in per_model.items():
            one = [r["checks"][stage][model] for r in got["rows"][:len(summary.projection)]]
            assert (inside, of) == (2 * sum(a for a, _ in one), 2 * sum(b for _, b in one))
    assert main(["coverage", str(out)]) == 0
    assert "| envelope |" in capsys.readouterr().out.splitlines()[0]
    assert main(["coverage", str(out), str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0]


def test_sweep_runs_each_value(tmp_path, capsys, tiny, write_toml):
    scen = write_toml(tmp_path / "s.toml", tiny(projection__ladder=[]))
    assert main(["sweep", str(scen), "--key", "population.gallery_size", "--values", "300,600",
                 "--out", str(tmp_path / "sw"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert sorted({r["value"] for r in rows}) == [300, 600]
    for r in rows:  # every rate with its interval, equal to the run's own summary
        s = read_summary(Path(r["folder"]))
        b = next(x for x in s.backends if x.key == r["backend"])
        assert [r["rank1_low"], r["rank1_high"]] == b.metrics.rank1_hit_rate.ci95
        assert r["fnir_low"] <= r["fnir"] <= r["fnir_high"]
    import csv
    with open(tmp_path / "sw" / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and float(table[0]["fnir_high"]) == rows[0]["fnir_high"]
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sweep", str(scen), "--key", "population.nothing", "--values", "1",
                 "--out", str(tmp_path / "sw2")]) == 2
    assert "no such key" in capsys.readouterr().err


def test_bench_scaling_fits_exponents(tmp_path):
    assert main(["bench", "scaling", "--sizes", "2000,8000", "--backends", "numba-flat,numba-hamming",
                 "--probes", "200", "--out", str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "scaling.json").read_text())
    assert set(res["fits"]) == {"numba-flat", "numba-hamming"}
    assert (tmp_path / "scaling.png").is_file()
    assert main(["bench", "scaling", "--sizes", "abc", "--out", str(tmp_path)]) == 2


def test_refuses_results_of_another_version(tmp_path, tiny):
    sc = scenario_from_dict(tiny(projection__ladder=[]))
    out = tmp_path / "v"
    run_scenario(sc, out, progress=False)
    man = json.loads((out / "manifest.json").read_text())
    man_version = man["fpscale"]
    man["fpscale"] = "0.0.1"
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ResultsError, match="results of fpscale 0.0.1"):
        run_scenario(sc, out, progress=False)
    again = run_scenario(sc, out, overwrite=True, progress=False)
    assert json.loads((out / "manifest.json").read_text())["fpscale"] == man_version
    assert [b.key for b in again.backends] == ["numba-flat", "faiss-Flat", "numba-hamming"]


def test_rerunning_a_complete_folder_does_nothing_new(tiny_run):
    sc, out, summary = tiny_run
    before = (out / "summary.json").stat().st_mtime_ns
    again = run_scenario(sc, out, progress=False)
    assert (out / "summary.json").stat().st_mtime_ns == before
    assert again.backends[0].metrics == summary.backends[0].metrics


def test_recall_against_exact():
    from fpscale.bench.measure.recall import recall_against
    exact = (np.array([[1, 2, 3], [4, 5, 6]]), None)
    approx = (np.array([[1, 2, 9], [6, 5, 4]]), None)
    r = recall_against(exact, approx)
    assert r.recall_at_L == pytest.approx(5 / 6) and r.rank1_agreement == 0.5 and r.L == 3


def test_fingerprint_of_a_vector_ladder_is_what_it_was_before_codes(tiny):
    # results written before projection.scores existed still resume: the
    # key is left out at its default (the value below is from that version)
    assert scenario_from_dict(tiny()).fingerprint() == "8c8d2ed600d6d434"
    assert scenario_from_dict(tiny(projection__scores="codes")).fingerprint() != "8c8d2ed600d6d434"
    # and before search.streamed: false is left out, true is a result's input
    assert scenario_from_dict(tiny(search__streamed=False)).fingerprint() == "8c8d2ed600d6d434"
    streamed = tiny(search__streamed=True, search__backends=[{"name": "numba-hamming"}],
                    projection__scores="codes")
    assert scenario_from_dict(streamed).fingerprint() != scenario_from_dict(
        dict(streamed, search=dict(streamed["search"], streamed=False))).fingerprint()
