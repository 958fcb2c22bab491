"""The re-scored pipeline's ladder: every rung's list re-scored, against a
plain reference, and a run whose largest rung is the search's own result."""

import numpy as np
import pytest

from fpscale.bench.measure import fpir_model as fm
from fpscale.bench.measure.rescored_ladder import (rescored_ladder_state, rescored_rung_lists,
                                                   rung_union)


def _lists(rng, Q, R, k, n):
    # nested prefixes' lists: each rung's ids drawn from [0, N_r), some
    # repeated from the last rung, padding where a rung is short
    rungs = np.linspace(n // R, n, R).astype(np.int64)
    ids = np.full((Q, R, k), -1, dtype=np.int64)
    for q in range(Q):
        for r, nr in enumerate(rungs):
            keep = ids[q, r - 1][ids[q, r - 1] >= 0][: k // 2] if r else np.zeros(0, np.int64)
            new = rng.choice(nr, size=k - len(keep), replace=False)
            row = np.unique(np.concatenate([keep, new]))[:k]
            ids[q, r, :len(row)] = rng.permutation(row)
    ids[0, 0, 2:] = -1
    return rungs, ids


def _score_of(q, i):
    # a re-scoring that ties often: small whole numbers from (search, id)
    return float((q * 7 + i * 13) % 5)


def test_rung_union_holds_each_distinct_candidate_once():
    rng = np.random.default_rng(1)
    _, ids = _lists(rng, 9, 4, 6, 200)
    u = rung_union(ids)
    assert u.shape == (9, 24)
    for q in range(9):
        want = np.unique(ids[q][ids[q] >= 0])
        assert np.array_equal(u[q, :len(want)], want)
        assert (u[q, len(want):] == -1).all()


def test_rescored_rung_lists_rerank_every_rung_by_the_union_scores():
    rng = np.random.default_rng(2)
    Q, R, k = 12, 5, 7
    _, ids = _lists(rng, Q, R, k, 500)
    u = rung_union(ids)
    us = np.array([[_score_of(q, i) if i >= 0 else -np.inf for i in row] for q, row in enumerate(u)],
                  dtype=np.float32)
    # the union handed back in another order, as re-scoring returns it
    perm = rng.permutation(u.shape[1])
    li, ls = rescored_rung_lists(ids, u[:, perm], us[:, perm])
    for q in range(Q):
        for r in range(R):
            row = [i for i in ids[q, r] if i >= 0]
            want = sorted(row, key=lambda i: (-_score_of(q, i), i))
            assert li[q, r, :len(want)].tolist() == want
            assert ls[q, r, :len(want)].tolist() == [_score_of(q, i) for i in want]
            assert (li[q, r, len(want):] == -1).all() and (ls[q, r, len(want):] == -np.inf).all()
    with pytest.raises(ValueError, match="missing"):
        rescored_rung_lists(ids, u[:, :3], us[:, :3])


def test_rescored_ladder_state_counts_what_each_rung_lists():
    rungs = np.array([10, 100])
    # search 0 non-mated; search 1's mate 50 enrolled at the second rung only;
    # search 2's mate 3 listed at the first rung and pushed out at the second
    list_ids = np.array([[[4, 7], [60, 4]],
                         [[1, 2], [50, 2]],
                         [[3, 8], [70, 80]]])
    union = rung_union(list_ids)
    score = {0: {4: 5.0, 7: 9.0, 60: 2.0}, 1: {1: 1.0, 2: 8.0, 50: 6.0}, 2: {3: 9.0, 8: 1.0, 70: 4.0, 80: 3.0}}
    us = np.array([[score[q].get(i, -np.inf) for i in row] for q, row in enumerate(union)], np.float32)
    mate = np.array([-1, 50, 3])
    st = rescored_ladder_state(rungs, list_ids, union, us, mate)
    # not a running maximum: search 0's best non-mate falls from 9 to 5
    assert st["top_nonmate"].tolist() == [[9.0, 5.0], [8.0, 8.0], [1.0, 4.0]]
    assert st["better_than_mate"][1, 1] == 1 and st["better_than_mate"][2, 0] == 0
    assert st["better_than_mate"][2, 1] == 2  # not listed: a miss at every threshold
    assert st["mate_score"].tolist() == [-np.inf, 6.0, -np.inf]
    assert st["mate"].tolist() == [-1, 50, 3] and not st["nested"]
    ladder = fm.Ladder(st["rungs"], st["top_nonmate"], st["mate"], nested=bool(st["nested"]))
    assert ladder.top_nonmate[0].tolist() == [9.0, 5.0]
    assert fm.Ladder(st["rungs"], st["top_nonmate"], st["mate"]).top_nonmate[0].tolist() == [9.0, 9.0]


def _run(scen, out):
    from fpscale.bench.cli import main
    assert main(["run", str(scen), "--out", str(out), "--quiet"]) == 0


@pytest.mark.parametrize("scores,backend", [("vectors", "numba-flat"), ("codes", "numba-hamming")])
def test_a_rescored_ladder_ends_at_the_searchs_own_rescored_lists(tiny, write_toml, tmp_path,
                                                                  scores, backend):
    # the largest rung is the whole gallery and the ladder scores what the
    # exact backend scores, so the pipeline's ladder at that rung is the
    # re-scored search itself: best non-mate and mate score, search by search
    from fpscale.bench.store.files import read_npz
    from fpscale.bench.store.summary import read_summary
    from fpscale.bench.tools.project import reproject
    d = tiny(search__backends=[{"name": backend}], search__rescore=True,
             search__rescore_candidates=6, projection__scores=scores, projection__rescored=True)
    out = tmp_path / "out"
    _run(write_toml(tmp_path / "s.toml", d), out)
    lad = read_npz(out / "ladder_two_index+minutiae.npz")
    first = read_npz(out / "ladder_two_index.npz")
    s = read_npz(out / f"searches_{backend}+minutiae.npz")
    other = (s["cand_ids"] >= 0) & (s["cand_ids"] != s["mate"][:, None])
    best = np.where(other, s["cand_scores"], -np.inf).max(axis=1)
    assert np.array_equal(lad["top_nonmate"][:, -1], best.astype(np.float32))
    assert np.array_equal(lad["mate_score"], s["mate_score"].astype(np.float32))
    assert np.isfinite(lad["mate_score"]).sum() > 40
    # the first stage's lists of the largest rung are the search's top 6
    plain = read_npz(out / f"searches_{backend}.npz")
    assert np.array_equal(first["list_ids"][:, -1], plain["cand_ids"][:, :6])
    # not a running maximum: some search's best re-scored non-mate falls
    assert (np.diff(lad["top_nonmate"], axis=1) < 0).any()
    summary = read_summary(out)
    assert set(summary.projection) == {"one", "two_index", "two_index+minutiae"}
    union = (rung_union(first["list_ids"]) >= 0).sum()
    assert summary.ladder_rescore.comparisons == 2 * union  # two fingers a candidate
    assert "the rungs' lists re-scored" in (out / "report.md").read_text()
    assert "## Projection: two_index, re-scored pipeline" in (out / "report.md").read_text()
    assert (out / "plots" / "fpir_vs_n_two_index+minutiae.png").stat().st_size > 1000
    _, again = reproject(out, {})
    assert again["two_index+minutiae"] == summary.projection["two_index+minutiae"]


def test_a_rescored_ladder_needs_rescoring_and_a_set_of_every_searched_finger(tiny, write_toml,
                                                                              tmp_path):
    from fpscale.bench.scenario import ScenarioError, load_scenario
    for over, why in (({"search__rescore": False}, "needs search.rescore"),
                      ({"search__rescore": True, "projection__finger_sets": ["one"]},
                       "holding every searched finger"),
                      ({"search__rescore": True, "projection__rescored": 1}, "true or false")):
        d = tiny(**{"projection__rescored": True, **over})
        with pytest.raises(ScenarioError, match=why):
            load_scenario(write_toml(tmp_path / "s.toml", d))
    # off by default, and then left out of the fingerprint
    plain = load_scenario(write_toml(tmp_path / "p.toml", tiny()))
    off = load_scenario(write_toml(tmp_path / "o.toml", tiny(projection__rescored=False)))
    assert not plain.projection.rescored and plain.fingerprint() == off.fingerprint()
    on = load_scenario(write_toml(tmp_path / "n.toml", tiny(search__rescore=True, projection__rescored=True)))
    assert on.fingerprint() != load_scenario(write_toml(tmp_path / "r.toml", tiny(search__rescore=True))).fingerprint()


def test_the_peak_memory_is_read_after_the_rescored_ladder(tiny, write_toml, tmp_path, monkeypatch):
    # the ladder's re-scoring runs after the searches; a peak read before it
    # would not hold its batches of templates
    from fpscale.bench.run import steps
    from fpscale.bench.store.summary import read_summary
    events = []
    ladder = steps._rescored_ladder
    monkeypatch.setattr(steps, "_rescored_ladder", lambda *a: (events.append("ladder"), ladder(*a))[1])
    monkeypatch.setattr(steps, "peak_rss", lambda: events.append("peak") or 12345)
    d = tiny(search__backends=[{"name": "numba-hamming"}], search__rescore=True,
             search__rescore_candidates=4, projection__scores="codes", projection__rescored=True)
    _run(write_toml(tmp_path / "s.toml", d), tmp_path / "out")
    assert events == ["ladder", "peak"]
    m = read_summary(tmp_path / "out").memory_plan
    assert m.peak_rss_bytes == 12345 and m.after_search > 0
