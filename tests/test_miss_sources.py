"""Where a re-scored backend's misses come from: the split adds up to FNIR's
count, an unlisted mate is scored as if listed, and a summary whose counts
do not add up is refused."""

import numpy as np
import pytest

from fpscale.bench.measure.metrics import OperatingPoint, mate_rank
from fpscale.bench.measure.miss_sources import MateOutcomes, miss_sources
from fpscale.bench.run.rescore_segment import rescore_segment, unlisted_mate_scores
from fpscale.bench.scenario import scenario_from_dict
from fpscale.bench.store.files import ResultsError, read_npz
from fpscale.bench.store.summary import summary_from_dict, to_json_dict
from fpscale.synth.population import booking_best_quality, submission_impressions, submission_truth


def _op(T):
    return OperatingPoint(target_fpir=0.01, threshold=T, resolved=True)


def test_misses_split_by_where_they_arise():
    # eight searches, two non-mated; ranks 0 = not listed; R = 3, T = 0.5
    rank = np.array([1, 0, 0, 2, 5, 3, 0, 0])
    pair = np.array([0.9, 0.7, 0.2, 0.3, 0.8, 0.5, np.nan, np.nan])
    mated = np.array([True] * 6 + [False] * 2)
    quality = np.array([1, 2, 5, 5, 3, 1, 4, 4])
    searches = MateOutcomes(rank, pair, mated, quality)
    ms = miss_sources(searches, 3, _op(0.5))
    # hits: search 0 (rank 1, 0.9) and 5 (rank R, exactly T); misses: 1 (not
    # listed, reaches T), 2 (not listed, below), 3 (listed, below T), 4 (past R)
    assert (ms.mated, ms.misses) == (6, 4)
    assert (ms.not_listed_above, ms.not_listed_below, ms.listed_missed) == (1, 1, 2)
    assert ms.fnir_all_listed.count == 3 and ms.fnir_all_listed.of == 6
    assert ms.mated_by_quality == [2, 1, 1, 0, 2]
    assert ms.misses_by_quality == [0, 1, 1, 0, 2]
    assert ms.retrieved is None and ms.not_listed_above_retrieved is None
    assert miss_sources(searches, 3, _op(None)) is None
    assert miss_sources(MateOutcomes(rank, pair, np.zeros(8, bool), quality), 3, _op(0.5)) is None


def test_unlisted_mates_above_t_split_by_whether_the_deeper_list_held_them():
    # ten mated searches, none listed, all reaching T = 0.5 but the last
    # two; the deeper list (length 50) held searches 0, 3, 4 and 9
    rank = np.zeros(10, dtype=np.int64)
    pair = np.array([0.9] * 8 + [0.1, 0.2])
    deeper = np.array([7, 0, 0, 50, 1, 0, 0, 0, 0, 12])
    ones = np.ones(10, dtype=np.int64)
    ms = miss_sources(MateOutcomes(rank, pair, ones > 0, ones, None, deeper, 50), 1, _op(0.5))
    assert (ms.not_listed_above, ms.not_listed_below) == (8, 2)
    # search 9 was retrieved but is below T: not counted
    assert (ms.retrieved, ms.not_listed_above_retrieved) == (50, 3)
    # a non-mated search's rank is not read
    mated = np.array([False] + [True] * 9)
    ms = miss_sources(MateOutcomes(rank, pair, mated, ones, None, deeper, 50), 1, _op(0.5))
    assert (ms.not_listed_above, ms.not_listed_above_retrieved) == (7, 2)
    assert ms.not_listed_above_refinable is None  # nothing refined
    # refined: of the five not retrieved and above T (searches 1, 2, 5, 6,
    # 7), the refinement would have handed on 2 and 6; search 8 is below T
    refinable = np.zeros(10, bool)
    refinable[[2, 6, 8]] = True
    ms = miss_sources(MateOutcomes(rank, pair, mated, ones, None, deeper, 50, refinable), 1, _op(0.5))
    assert ms.not_listed_above_refinable == 2


def test_booking_best_quality_is_the_lowest_level_of_a_search(tiny):
    spec = scenario_from_dict(tiny()).population
    imp = submission_impressions(spec, 0, 50)
    want = [min(imp.quality[imp.row == q]) for q in range(50)]
    assert booking_best_quality(spec, 50).tolist() == want


def test_an_unlisted_mate_scores_what_it_would_have_scored_listed(tiny):
    sc = scenario_from_dict(tiny(search__rescore=True))
    spec, rescoring = sc.population, sc.search.rescoring
    _, mate = submission_truth(spec, 0, 40)
    mated = mate >= 0
    assert mated.sum() >= 5
    # the mate listed third of three candidates, beside two others
    others = (mate[:, None] + np.array([[1, 2]])) % spec.gallery_size
    listed = np.where(mated[:, None], np.hstack([others, mate[:, None]]), -1)
    ids, scores, _ = rescore_segment(spec, listed, rescoring)
    _, as_listed = mate_rank(ids, mate, scores)
    got = unlisted_mate_scores(spec, mate, mated, rescoring)
    assert np.all(np.isfinite(got[mated]))
    np.testing.assert_array_equal(got[mated], as_listed[mated])
    assert np.all(got[~mated] == -np.inf)


def test_a_rescored_row_says_where_its_misses_come_from(rescored_run):
    summary, out = rescored_run
    row = {b.key: b for b in summary.backends}["numba-flat+minutiae"]
    assert {b.key: b for b in summary.backends}["numba-flat"].miss_sources is None
    t = read_npz(out / "searches_numba-flat+minutiae.npz")
    mated = t["mate"] >= 0
    unlisted = int((mated & (t["mate_rank"] == 0)).sum())
    assert unlisted > 0
    assert len(row.miss_sources) == len(row.metrics.operating_points)
    for ms, op in zip(row.miss_sources, row.metrics.operating_points):
        assert ms.threshold == op.threshold and ms.mated == op.fnir.of
        assert ms.misses == op.fnir.count
        assert ms.not_listed_above + ms.not_listed_below == unlisted
        assert ms.not_listed_above + ms.not_listed_below + ms.listed_missed == ms.misses
        assert sum(ms.mated_by_quality) == ms.mated and sum(ms.misses_by_quality) == ms.misses
        # every mate listed can only help
        assert ms.fnir_all_listed.count <= ms.misses
    report = (out / "report.md").read_text()
    assert "Where the misses come from" in report


def test_miss_sources_that_do_not_add_up_are_refused(rescored_run):
    summary, _ = rescored_run
    d = to_json_dict(summary)
    row = next(b for b in d["backends"] if b["key"] == "numba-flat+minutiae")
    row["miss_sources"][0]["listed_missed"] += 1
    with pytest.raises(ResultsError, match="miss sources of numba-flat\\+minutiae"):
        summary_from_dict(d)


def test_the_report_says_when_poor_searches_were_rescored_deeper(rescored_run):
    from dataclasses import replace
    from fpscale.bench.report.markdown import _miss_sources
    summary, out = rescored_run
    said = "\n".join(_miss_sources(summary))
    assert "Where the misses come from" in said and "re-scored, the others" not in said
    srch = replace(summary.scenario.search, rescore_poor_candidates=8, rescore_poor_quality=3)
    deeper = replace(summary, scenario=replace(summary.scenario, search=srch))
    said = "\n".join(_miss_sources(deeper))
    assert ("quality 3 or worse had its top 8 re-scored, the others their top 2; "
            "listed means in the best 2 after re-scoring") in said


def test_the_console_line_reads_a_split_without_an_interval():
    from fpscale.bench.measure.metrics import Rate
    from fpscale.bench.measure.miss_sources import MissSources
    from fpscale.bench.report.console import miss_source_line
    ms = MissSources(0.001, 0.5, 10, 3, 1, 1, 1, Rate(0.2, [0.05, 0.5], 2, 10), [10, 0, 0, 0, 0],
                     [3, 0, 0, 0, 0])
    line = miss_source_line("x+minutiae", ms)
    assert "3 of 10 mated searches missed: 1 not listed" in line and line.endswith("0.2000 [0.0500, 0.5000]")
    ms.fnir_all_listed = Rate(None, [None, None], 0, 0)
    assert miss_source_line("x+minutiae", ms).endswith("listed n/a")
    ms.retrieved, ms.not_listed_above_retrieved = 2000, 1
    assert "1 not listed by the candidate stage though the 1:1 score reaches T (1 of them in its " \
           "top 2,000), 1 not listed and below T" in miss_source_line("x+minutiae", ms)
    ms.not_listed_above_refinable = 0
    assert "(1 of them in its top 2,000; of the others, 0 the refinement would have handed on " \
           "had the backend retrieved them)" in miss_source_line("x+minutiae", ms)
    ms.unmatchable = 2
    assert miss_source_line("x+minutiae", ms).endswith(
        "; 2 of the misses are unmatchable bookings (captures of another person's fingers, "
        "population.unmatchable_share), missed by construction")


def test_unmatchable_misses_are_counted_apart():
    rank = np.array([1, 0, 0, 2, 1])
    pair = np.array([0.9, 0.2, 0.1, 0.3, 0.8])
    mated = np.array([True, True, True, True, False])
    quality = np.ones(5, dtype=np.int64)
    unmatchable = np.array([False, True, False, False, True])  # the last is not mated
    ms = miss_sources(MateOutcomes(rank, pair, mated, quality, unmatchable), 3, _op(0.5))
    assert (ms.misses, ms.unmatchable) == (3, 1)
    assert miss_sources(MateOutcomes(rank, pair, mated, quality), 3, _op(0.5)).unmatchable is None


@pytest.fixture(scope="module")
def unmatchable_run(tmp_path_factory, tiny):
    from fpscale.bench.run.steps import run_scenario
    d = tiny(population__gallery_size=400, population__n_submissions=160,
              population__mated_share=0.5, population__unmatchable_share=0.25,
              search__backends=[{"name": "numba-flat"}], search__rescore=True,
              search__rescore_candidates=10, projection__ladder=[],
              projection__finger_sets=["two_index"])
    out = tmp_path_factory.mktemp("unmatchable") / "run"
    return run_scenario(scenario_from_dict(d), out, progress=False), out


def test_an_unmatchable_booking_is_missed_and_reported(unmatchable_run):
    from fpscale.synth.population import unmatchable_bookings
    summary, out = unmatchable_run
    spec = summary.scenario.population
    flagged = unmatchable_bookings(spec, 0, spec.n_submissions)
    assert 15 <= flagged.sum() <= 30  # about a quarter of some 80 mated
    row = {b.key: b for b in summary.backends}["numba-flat+minutiae"]
    for ms in row.miss_sources:
        # another person's fingers never reach the mate: each is a miss
        assert ms.unmatchable == flagged.sum()
        assert ms.misses >= ms.unmatchable
    assert "Unmatchable bookings among the misses" in (out / "report.md").read_text()
    d = to_json_dict(summary)
    rescored = next(b for b in d["backends"] if b["key"] == "numba-flat+minutiae")
    rescored["miss_sources"][0]["unmatchable"] = 10_000
    with pytest.raises(ResultsError, match="miss sources"):
        summary_from_dict(d)


def test_poor_searches_have_a_longer_part_of_their_list_rescored(tiny):
    # lists of 6 with the mate last; the first 2 re-scored, all 6 where the
    # best booking finger is at quality >= 3
    from dataclasses import replace
    sc = scenario_from_dict(tiny(search__rescore=True, search__candidates=6,
                                 search__rescore_candidates=2, search__rescore_poor_candidates=6,
                                 search__rescore_poor_quality=3))
    spec, rescoring = sc.population, sc.search.rescoring
    assert (rescoring.candidates, rescoring.poor_candidates, rescoring.poor_quality) == (2, 6, 3)
    Q = 60
    _, mate = submission_truth(spec, 0, Q)
    others = (np.arange(Q)[:, None] * 7 + np.arange(1, 6)[None, :] * 13) % spec.gallery_size
    ids = np.hstack([others, np.where(mate >= 0, mate, -1)[:, None]]).astype(np.int64)
    poor = booking_best_quality(spec, Q) >= 3
    assert 0 < poor.sum() < Q
    got_i, got_s, info = rescore_segment(spec, ids, rescoring)
    assert got_i.shape == (Q, 2)
    # a poor search: the best 2 of all 6 re-scored; the others: their first 2
    all6 = rescore_segment(spec, ids, replace(rescoring, candidates=6, poor_candidates=0))
    first2 = rescore_segment(spec, ids, replace(rescoring, poor_candidates=0))
    np.testing.assert_array_equal(got_i[poor], all6[0][poor, :2])
    np.testing.assert_array_equal(got_s[poor], all6[1][poor, :2])
    np.testing.assert_array_equal(got_i[~poor], first2[0][~poor])
    np.testing.assert_array_equal(got_s[~poor], first2[1][~poor])
    depth = np.where(poor, 6, 2)[:, None]  # two fingers a listed candidate
    assert info["comparisons"] == 2 * ((ids >= 0) & (np.arange(6)[None, :] < depth)).sum()
    # the mates (listed last) are found only where the list was re-scored deeper
    found = (got_i == mate[:, None]).any(1) & (mate >= 0)
    assert found[poor & (mate >= 0)].mean() > 0.8 and not found[~poor].any()
    # one search at a time (its own segment and offset) gives the same lists
    for s in range(0, Q, 7):
        one = rescore_segment(spec, ids[s:s + 1], rescoring, offset=s)
        np.testing.assert_array_equal(one[0][0], got_i[s])


def test_a_poor_search_depth_below_the_rescored_list_is_refused(tiny):
    from fpscale.bench.scenario import ScenarioError
    for poor, quality in ((1, 4), (6, 0), (6, 6), (10_001, 4)):
        with pytest.raises(ScenarioError, match="rescore_poor"):
            scenario_from_dict(tiny(search__rescore=True, search__rescore_candidates=2,
                                    search__rescore_poor_candidates=poor,
                                    search__rescore_poor_quality=quality))
    sc = scenario_from_dict(tiny(search__rescore=True))
    assert "rescore_poor_candidates" not in sc.to_dict()["search"]  # left out at its default
    assert sc.search.retrieved == sc.search.candidates
    # deeper than the reported list: the vectors retrieve that many
    deeper = scenario_from_dict(tiny(search__rescore=True, search__candidates=10,
                                     search__rescore_candidates=2,
                                     search__rescore_poor_candidates=40))
    assert deeper.search.retrieved == 40
    off = scenario_from_dict(tiny(search__candidates=10, search__rescore_candidates=2,
                                  search__rescore_poor_candidates=40))
    assert off.search.retrieved == 10  # nothing is re-scored


@pytest.fixture(scope="module")
def deep_lists_runs(tmp_path_factory, tiny):
    """Runs of one scenario whose poor searches have their top 24 re-scored:
    the vectors' row reporting 6 candidates (retrieving 24), reporting all
    24, and a run reporting 6 without the deeper re-scoring."""
    from fpscale.bench.run.steps import run_scenario
    base = dict(population__gallery_size=400, population__n_submissions=120,
                search__backends=[{"name": "numba-flat"}], search__rescore=True,
                search__rescore_candidates=3, projection__ladder=[],
                projection__finger_sets=["two_index"], metrics__rank=3)
    runs = {}
    for name, L, poor in (("short", 6, 24), ("long", 24, 24), ("plain", 6, 0)):
        out = tmp_path_factory.mktemp(name) / "run"
        d = tiny(**base, search__candidates=L, search__rescore_poor_candidates=poor,
                 search__rescore_poor_quality=3)
        runs[name] = (run_scenario(scenario_from_dict(d), out, progress=False), out)
    return runs


def test_the_vectors_row_keeps_its_list_while_poor_searches_are_rescored_deeper(deep_lists_runs):
    short, long, plain = (deep_lists_runs[k] for k in ("short", "long", "plain"))
    tables = {k: read_npz(out / "searches_numba-flat.npz") for k, (_, out) in deep_lists_runs.items()}
    rescored = {k: read_npz(out / "searches_numba-flat+minutiae.npz")
                for k, (_, out) in deep_lists_runs.items()}
    # the vectors' row: the first 6 of the 24 retrieved, as a run of 6 lists them
    assert tables["short"]["cand_ids"].shape == (120, 6)
    np.testing.assert_array_equal(tables["short"]["cand_ids"], tables["long"]["cand_ids"][:, :6])
    np.testing.assert_array_equal(tables["short"]["cand_ids"], tables["plain"]["cand_ids"])
    row = {s.key: s for s in short[0].backends}
    assert row["numba-flat"].metrics == {s.key: s for s in plain[0].backends}["numba-flat"].metrics
    # the re-scored row: as if the vectors had reported all 24
    for col in ("cand_ids", "cand_scores", "mate_rank"):
        np.testing.assert_array_equal(rescored["short"][col], rescored["long"][col])
    assert not np.array_equal(rescored["short"]["cand_ids"], rescored["plain"]["cand_ids"])
    assert "The vectors retrieved 24 a search; their own row reports its top 6" in \
        (short[1] / "report.md").read_text()


def test_a_row_counts_the_unlisted_mates_its_deeper_list_held(deep_lists_runs, tiny):
    # "short" and "long" both retrieve 24 and re-score 3 for every search:
    # the mates MCC reaches unlisted, of them those among the vectors' 24
    from fpscale.bench.store.summary import read_summary
    (summary, out), (_, long_out) = deep_lists_runs["short"], deep_lists_runs["long"]
    spec, srch = summary.scenario.population, summary.scenario.search
    rescored = read_npz(out / "searches_numba-flat+minutiae.npz")
    mate = rescored["mate"]
    unlisted = (mate >= 0) & (rescored["mate_rank"] == 0)
    pair = unlisted_mate_scores(spec, mate, unlisted, srch.rescoring)
    in24 = (read_npz(long_out / "searches_numba-flat.npz")["cand_ids"] == mate[:, None]).any(1)
    row = {b.key: b for b in summary.backends}["numba-flat+minutiae"]
    for ms in row.miss_sources:
        above = unlisted & (pair >= ms.threshold)
        assert ms.not_listed_above == above.sum()
        assert (ms.retrieved, ms.not_listed_above_retrieved) == (24, (above & in24).sum())
    assert any(0 < ms.not_listed_above_retrieved for ms in row.miss_sources)
    assert "in its top 24" in (out / "report.md").read_text()
    assert read_summary(out).backends == summary.backends  # written and read back
    # a list no deeper than the re-scored one: not counted
    d = tiny(population__gallery_size=200, population__n_submissions=40,
             search__backends=[{"name": "numba-flat"}], search__rescore=True,
             search__candidates=4, search__rescore_candidates=4, projection__ladder=[])
    from fpscale.bench.run.steps import run_scenario
    same = run_scenario(scenario_from_dict(d), out.parent / "same", progress=False)
    assert all(ms.retrieved is None for b in same.backends for ms in b.miss_sources or [])


def test_a_deeper_list_count_that_does_not_add_up_is_refused(deep_lists_runs):
    summary, _ = deep_lists_runs["short"]
    for field, value in (("not_listed_above_retrieved", 10_000), ("retrieved", None),
                         ("retrieved", 0), ("not_listed_above_refinable", 10_000)):
        d = to_json_dict(summary)
        row = next(b for b in d["backends"] if b["key"] == "numba-flat+minutiae")
        row["miss_sources"][0][field] = value
        with pytest.raises(ResultsError, match="miss sources"):
            summary_from_dict(d)
