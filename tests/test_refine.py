"""Refinement before re-scoring (search.refine_candidates): a backend's
deeper lists re-ranked by the records' float vectors give numba-flat's
lists, the backend's own row keeps its unrefined list, and bad settings are
refused."""

import numpy as np
import pytest

from fpscale.bench.run.refine import refine_segment
from fpscale.bench.scenario import ScenarioError, scenario_from_dict
from fpscale.bench.store.files import read_npz
from fpscale.matcher.registry import make_backend
from fpscale.synth.population import gallery_chunk, submission_chunk


def test_a_list_refined_from_the_whole_gallery_is_numba_flats_list(tiny):
    spec = scenario_from_dict(tiny(population__gallery_size=300, projection__ladder=[])).population
    gallery = gallery_chunk(spec, 0, 300)
    probes = submission_chunk(spec, 0, 40).vectors
    flat = make_backend("numba-flat", spec.record_dim)
    flat.add(gallery.ids, gallery.vectors)
    want_i, want_s = flat.search(probes, 12)
    # every record listed, in an order of no meaning, one search padded
    rng = np.random.default_rng(1)
    ids = np.stack([rng.permutation(300) for _ in range(40)]).astype(np.int64)
    got_i, got_s, info = refine_segment(spec, probes, ids, 12)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, want_s)
    assert info["pairs"] == 40 * 300
    # a partial list: its best by the same scores, padding last
    part = np.where(np.arange(300)[None, :] < 5, ids, -1)
    pi, ps, info = refine_segment(spec, probes, part, 8)
    assert (pi[:, 5:] == -1).all() and np.isneginf(ps[:, 5:]).all() and info["pairs"] == 40 * 5
    full = probes.astype(np.float64) @ gallery.vectors.T.astype(np.float64)
    for q in range(40):
        order = sorted(ids[q, :5], key=lambda g: (-full[q, g], g))
        assert pi[q, :5].tolist() == order
        np.testing.assert_allclose(ps[q, :5], full[q, pi[q, :5]], rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def refined_runs(tmp_path_factory, tiny):
    """Runs of one scenario: numba-hamming's lists refined from the whole
    gallery, numba-hamming unrefined, numba-flat."""
    from fpscale.bench.run.steps import run_scenario
    base = dict(population__gallery_size=400, population__n_submissions=120,
                search__rescore=True, search__rescore_candidates=3, projection__ladder=[],
                metrics__rank=3)
    runs = {}
    for name, backend, refine in (("refined", "numba-hamming", 400), ("partial", "numba-hamming", 20),
                                  ("codes", "numba-hamming", 0), ("flat", "numba-flat", 0)):
        out = tmp_path_factory.mktemp(name) / "run"
        d = tiny(**base, search__backends=[{"name": backend}], search__refine_candidates=refine)
        runs[name] = (run_scenario(scenario_from_dict(d), out, progress=False), out)
    return runs


def test_refined_codes_are_rescored_as_the_float_vectors_list(refined_runs):
    def table(name, key):
        return read_npz(refined_runs[name][1] / f"searches_{key}.npz")
    refined = table("refined", "numba-hamming+minutiae")
    flat = table("flat", "numba-flat+minutiae")
    for col in ("cand_ids", "cand_scores", "mate_rank"):
        np.testing.assert_array_equal(refined[col], flat[col])
    # the codes' own row is the unrefined search's
    np.testing.assert_array_equal(table("refined", "numba-hamming")["cand_ids"],
                                  table("codes", "numba-hamming")["cand_ids"])
    assert not np.array_equal(refined["cand_ids"],
                              table("codes", "numba-hamming+minutiae")["cand_ids"])
    summary, out = refined_runs["refined"]
    r = {b.key: b for b in summary.backends}["numba-hamming+minutiae"].timings.refine
    assert (r.searched, r.kept, r.pairs) == (400, 10, 120 * 400) and r.refine_s > 0
    assert {b.key: b for b in refined_runs["codes"][0].backends}[
        "numba-hamming+minutiae"].timings.refine is None
    # the codes retrieved the whole gallery: every mate left out of the
    # re-scored list was in the list refined
    row = {b.key: b for b in summary.backends}["numba-hamming+minutiae"]
    assert any(ms.not_listed_above for ms in row.miss_sources)
    for ms in row.miss_sources:
        assert (ms.retrieved, ms.not_listed_above_retrieved) == (400, ms.not_listed_above)
        assert ms.not_listed_above_refinable == 0
    report = (out / "report.md").read_text()
    assert "numba-hamming's top 400 a search were re-ranked by the records' float vectors" in report
    assert "Refined before re-scoring" not in (refined_runs["codes"][1] / "report.md").read_text()


def test_refinement_settings_that_cannot_work_are_refused(tiny):
    for over, why in ((dict(search__refine_candidates=100), "needs search.rescore"),
                      (dict(search__rescore=True, search__refine_candidates=5), "at least the list"),
                      (dict(search__rescore=True, search__candidates=10,
                            search__rescore_poor_candidates=40, search__refine_candidates=30),
                       r"at least the list handed to the re-scoring \(40\)"),
                      (dict(search__rescore=True, search__refine_candidates=10_001), "refine"),
                      (dict(search__rescore=True, search__refine_candidates=50,
                            projection__rescored=True), "unrefined")):
        with pytest.raises(ScenarioError, match=why):
            scenario_from_dict(tiny(**over))
    sc = scenario_from_dict(tiny(search__rescore=True, search__refine_candidates=50))
    assert (sc.search.searched, sc.search.retrieved) == (50, 10)
    assert "refine_candidates" not in scenario_from_dict(tiny()).to_dict()["search"]


def test_a_refined_row_counts_the_mates_the_codes_lost_that_the_refinement_would_hand_on(refined_runs):
    # the codes' top 20 refined to 10, the best 3 re-scored: of the unlisted
    # mates MCC reaches, those outside the codes' 20 whose float score beats
    # the refined list's third
    from fpscale.bench.run.rescore_segment import unlisted_mate_scores
    summary, out = refined_runs["partial"]
    spec, srch = summary.scenario.population, summary.scenario.search
    gallery = gallery_chunk(spec, 0, spec.gallery_size)
    subs = submission_chunk(spec, 0, spec.n_submissions)
    codes = make_backend("numba-hamming", spec.record_bits)
    codes.add(gallery.ids, gallery.codes)
    top20, _ = codes.search(subs.codes, 20)
    _, refined_s, _ = refine_segment(spec, subs.vectors, top20, 10)
    mate = read_npz(out / "searches_numba-hamming+minutiae.npz")["mate"]
    rank = read_npz(out / "searches_numba-hamming+minutiae.npz")["mate_rank"]
    unlisted = (mate >= 0) & (rank == 0)
    pair = unlisted_mate_scores(spec, mate, unlisted, srch.rescoring)
    retrieved = (top20 == mate[:, None]).any(1)
    full = subs.vectors.astype(np.float64) @ gallery.vectors.T.astype(np.float64)
    mate_float = np.where(mate >= 0, full[np.arange(len(mate)), np.maximum(mate, 0)], -np.inf)
    beats = mate_float > refined_s[:, 2]
    row = {b.key: b for b in summary.backends}["numba-hamming+minutiae"]
    seen = 0
    for ms in row.miss_sources:
        above = unlisted & (pair >= ms.threshold)
        assert (ms.retrieved, ms.not_listed_above_retrieved) == (20, (above & retrieved).sum())
        assert ms.not_listed_above_refinable == (above & ~retrieved & beats).sum()
        seen += ms.not_listed_above_refinable
    assert seen > 0
    assert "the refinement would have handed on" in (out / "report.md").read_text()


def test_refinement_would_list_compares_the_mates_float_score_with_the_last_handed_on(tiny):
    from fpscale.bench.run.refine import refinement_would_list
    spec = scenario_from_dict(tiny(population__gallery_size=300, projection__ladder=[])).population
    gallery = gallery_chunk(spec, 0, 300)
    probes = submission_chunk(spec, 0, 40).vectors
    mate = np.arange(40, dtype=np.int64) * 7
    score = (probes.astype(np.float64) * gallery.vectors[mate].astype(np.float64)).sum(1)
    last = (score + np.where(np.arange(40) % 2, -0.05, 0.05)).astype(np.float32)
    who = np.arange(40) % 3 > 0
    got = refinement_would_list(spec, probes, mate, last, who)
    np.testing.assert_array_equal(got, who & (np.arange(40) % 2 == 1))
