"""``fpscale evaluate`` on candidate lists of a matcher fpscale never saw.

The lists come from an independent brute-force search written here (numpy
inner products over random vectors, top L), saved as CSV with the csv
module and as Parquet with pyarrow; every metric checked is recomputed here
from the vectors, not from fpscale's arrays. Malformed files are refused
with one line, exit code 2 and nothing written.
"""

import csv
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fpscale.bench.cli import main
from fpscale.bench.store.summary import read_summary

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 300, 3000)  # nested galleries: prefixes of one gallery
L = 10
TARGETS = (0.1, 0.02)


class World:
    """Random unit vectors: a gallery, mated probes (noisy copies of one of
    the first 100 records, so that every gallery holds every mate) and
    non-mated probes; scores are inner products in float64."""

    def __init__(self, seed=11, d=12, q_mated=160, q_non=340):
        rng = np.random.default_rng(seed)
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        self.gallery = unit(rng.normal(size=(SIZES[-1], d)))
        mates = rng.integers(0, SIZES[0], q_mated)
        mated = unit(self.gallery[mates] + 0.9 * rng.normal(size=(q_mated, d)) / np.sqrt(d))
        probes = np.vstack([mated, unit(rng.normal(size=(q_non, d)))])
        order = rng.permutation(len(probes))
        self.probes = probes[order]
        self.mate = np.r_[mates, np.full(q_non, -1)][order]
        self.probe_names = [f"S{7 * i + 3:04d}" for i in range(len(self.probes))]

    @staticmethod
    def gid(i):
        return f"G{i:05d}"

    def lists(self, n):
        """(ids (Q, L), scores (Q, L)) of brute-force search over the first n records."""
        s = self.probes @ self.gallery[:n].T
        idx = np.argsort(-s, axis=1, kind="stable")[:, :L]
        return idx, np.take_along_axis(s, idx, axis=1)

    def rows(self, n):
        ids, scores = self.lists(n)
        out = [(self.probe_names[q], r + 1, self.gid(ids[q, r]), float(scores[q, r]))
               for q in range(len(ids)) for r in range(L)]
        return out[::-1]  # any row order is accepted


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _write_parquet(path, header, rows):
    cols = list(zip(*rows))
    pq.write_table(pa.table({h: list(c) for h, c in zip(header, cols)}), path)
    return path


HEADER = ["probe_id", "rank", "candidate_id", "score"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World()
    d = tmp_path_factory.mktemp("evaluate")
    truth = [(p, "" if m < 0 else w.gid(m)) for p, m in zip(w.probe_names, w.mate)]
    w.truth_csv = _write_csv(d / "truth.csv", ["probe_id", "mate_id"], truth)
    w.files = {n: _write_csv(d / f"lists_{n}.csv", HEADER, w.rows(n)) for n in SIZES[:-1]}
    w.files[SIZES[-1]] = _write_parquet(d / f"lists_{SIZES[-1]}.parquet", HEADER, w.rows(SIZES[-1]))
    w.largest_csv = _write_csv(d / "largest.csv", HEADER, w.rows(SIZES[-1]))
    w.scenario = d / "s.toml"
    w.scenario.write_text("[population]\ngallery_size = 10\n"
                          f"[metrics]\ntarget_fpir = {list(TARGETS)}\n"
                          "[projection]\nstudy_fpir = [0.2, 0.1]\n"
                          "[target]\ngallery_size = 30000\nsearches_per_year = 50000\n")
    w.dir = d
    return w


def _evaluate(args):
    return main(["evaluate", *map(str, args)])


@pytest.fixture(scope="module")
def ladder_run(world):
    out = world.dir / "ladder"
    files = [world.files[n] for n in SIZES]
    sizes = [a for n in SIZES for a in ("--gallery-size", n)]
    assert _evaluate([*files, "--truth", world.truth_csv, *sizes, "--out", out,
                      "--matcher", "brute", "--scenario", world.scenario,
                      "--target-gallery-size", 60000]) == 0
    return out


def test_metrics_equal_an_independent_recomputation(world, ladder_run):
    s = read_summary(ladder_run)
    assert [b.key for b in s.backends] == [f"brute-N{n}" for n in SIZES]
    mated = world.mate >= 0
    for n, b in zip(SIZES, s.backends):
        scores = world.probes @ world.gallery[:n].T
        mate_score = np.where(mated, scores[np.arange(len(scores)), np.maximum(world.mate, 0)], -np.inf)
        better = (scores > mate_score[:, None]).sum(axis=1)  # others above the mate: rank - 1
        m = b.metrics
        assert (m.searches, m.mated) == (len(world.mate), mated.sum())
        assert m.rank1_hit_rate.value == pytest.approx(np.mean(better[mated] == 0), abs=1e-12)
        cmc = [np.mean(better[mated] < r) for r in range(1, L + 1)]
        assert m.cmc == pytest.approx(cmc, abs=1e-12)
        top = scores.max(axis=1)
        assert [op.target_fpir for op in m.operating_points] == list(TARGETS)
        for op in m.operating_points:
            T = op.threshold
            fpir = np.mean(top[~mated] >= T)
            assert op.fpir.value == pytest.approx(fpir, abs=1e-12) and fpir <= op.target_fpir
            # the lowest such threshold: the next non-mated score down breaks the target
            below = np.sort(top[~mated][top[~mated] < T])[-1]
            assert np.mean(top[~mated] >= below) > op.target_fpir
            fnir = np.mean((better[mated] > 0) | (mate_score[mated] < T))
            assert op.fnir.value == pytest.approx(fnir, abs=1e-12)


def test_several_gallery_sizes_feed_the_projection(world, ladder_run):
    s = read_summary(ladder_run)
    p = s.projection["all"]
    assert p.rungs == list(SIZES) and p.target_gallery_size == 60000
    assert s.scenario.target.searches_per_year == 50000
    assert p.held_out and (p.held_out[0].n_fit, p.held_out[0].n_test) == (300, 3000)
    nonmated = world.mate < 0
    for a in p.at_target:
        for r, n in enumerate(SIZES):  # FPIR per rung, from the vectors
            top = (world.probes[nonmated] @ world.gallery[:n].T).max(axis=1)
            assert a.measured[r].value == pytest.approx(np.mean(top >= a.threshold), abs=1e-12)
    assert "projection" in (ladder_run / "report.md").read_text().lower()
    # fpscale project re-reads the ladder file of an evaluation
    assert main(["project", str(ladder_run), "--gallery-size", "100000"]) == 0


def test_csv_and_parquet_of_the_same_lists_agree(world, ladder_run, tmp_path):
    out = tmp_path / "one"
    assert _evaluate([world.largest_csv, "--truth", world.truth_csv, "--gallery-size", SIZES[-1],
                      "--out", out, "--matcher", "brute", "--scenario", world.scenario]) == 0
    one, three = read_summary(out), read_summary(ladder_run)
    assert one.backends[0].metrics == three.backends[-1].metrics
    assert one.projection is None and "no projection" in (out / "report.md").read_text()


def test_tables_of_an_evaluation_are_read_by_duckdb_and_pandas(world, ladder_run):
    key = f"brute-N{SIZES[-1]}"
    df = pd.read_parquet(ladder_run / f"searches_{key}.parquet")
    assert len(df) == len(world.mate) * L
    mine = df[df.probe_id == world.probe_names[0]].sort_values("rank")
    ids, _ = world.lists(SIZES[-1])
    assert list(mine.candidate_label) == [world.gid(i) for i in ids[0]]
    con = duckdb.connect()
    hits = con.execute("select count(*) from read_parquet(?) where rank = 1 and candidate_label = mate_label",
                       [str(ladder_run / f"searches_{key}.parquet")]).fetchone()[0]
    assert hits == read_summary(ladder_run).backends[-1].metrics.rank1_hit_rate.count
    ev = con.execute("select evaluation.matcher, evaluation.files[3].gallery_size from read_json_auto(?)",
                     [str(ladder_run / "summary.json")]).fetchone()
    assert ev == ("brute", SIZES[-1])
    for p in ladder_run.glob("*.csv"):
        assert con.execute("select count(*) from read_csv_auto(?)", [str(p)]).fetchone()[0] == len(pd.read_csv(p))


def test_the_shipped_example_runs(tmp_path, capsys):
    out = tmp_path / "example"
    ex = ROOT / "examples"
    assert main(["evaluate", str(ex / "candidates.csv"), "--truth", str(ex / "truth.csv"),
                 "--gallery-size", "2500", "--out", str(out), "--matcher", "example"]) == 0
    m = read_summary(out).backends[0].metrics
    assert (m.searches, m.mated, m.rank1_hit_rate.count) == (6, 3, 1)
    assert m.cmc == pytest.approx([1 / 3, 2 / 3, 2 / 3])


# ---------------------------------------------------------------- refusals

def _good_rows():
    return [("a", 1, "g1", 0.9), ("a", 2, "g2", 0.5), ("b", 1, "g3", 0.7), ("b", 2, "g1", 0.2)]


TRUTH = [("a", "g1"), ("b", "")]
BAD = {
    "missing column": (HEADER[:3], [r[:3] for r in _good_rows()], TRUTH, ["2500"], "missing column"),
    "rank gap": (HEADER, [("a", 1, "g1", 0.9), ("a", 3, "g2", 0.5)], TRUTH, ["2500"], "not 1..L"),
    "duplicate rank": (HEADER, [("a", 1, "g1", 0.9), ("a", 1, "g2", 0.5)], TRUTH, ["2500"], "twice"),
    "rank zero": (HEADER, [("a", 0, "g1", 0.9)], TRUTH, ["2500"], "rank"),
    "rank not a number": (HEADER, [("a", "first", "g1", 0.9)], TRUTH, ["2500"], "rank"),
    "non-finite score": (HEADER, [("a", 1, "g1", "nan")], TRUTH, ["2500"], "finite"),
    "infinite score": (HEADER, [("a", 1, "g1", "inf")], TRUTH, ["2500"], "finite"),
    "empty score": (HEADER, [("a", 1, "g1", "")], TRUTH, ["2500"], "score"),
    "probe not in truth": (HEADER, _good_rows() + [("z", 1, "g1", 0.3)], TRUTH, ["2500"], "'z'"),
    "gallery size zero": (HEADER, _good_rows(), TRUTH, ["0"], "at least 1"),
    "gallery size text": (HEADER, _good_rows(), TRUTH, ["big"], "--gallery-size"),
    "two sizes for one file": (HEADER, _good_rows(), TRUTH, ["10", "20"], "once per file"),
    "gallery smaller than the lists": (HEADER, _good_rows(), TRUTH, ["1"], "gallery of 1"),
    "scores rise with rank": (HEADER, [("a", 1, "g1", 0.5), ("a", 2, "g2", 0.9)], TRUTH, ["2500"],
                              "best first"),
    "candidate twice": (HEADER, [("a", 1, "g1", 0.9), ("a", 2, "g1", 0.5)], TRUTH, ["2500"], "twice"),
    "mate id with spaces": (HEADER, _good_rows(), [("a", " g1"), ("b", "")], ["2500"], "spaces"),
    "probe listed twice in truth": (HEADER, _good_rows(), TRUTH + [("a", "g2")], ["2500"], "twice"),
    "empty candidates": (HEADER, [], TRUTH, ["2500"], "no candidates"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_input_is_refused_with_one_line(case, tmp_path, capsys):
    header, rows, truth, sizes, words = BAD[case]
    cands = _write_csv(tmp_path / "c.csv", header, rows)
    tr = _write_csv(tmp_path / "t.csv", ["probe_id", "mate_id"], truth)
    out = tmp_path / "out"
    args = [cands, "--truth", tr, "--out", out] + [a for n in sizes for a in ("--gallery-size", n)]
    assert _evaluate(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpscale: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert words in err, err
    assert not out.exists()


def test_parquet_ids_are_checked_too(tmp_path, capsys):
    # a float mate_id column (as pandas writes integers with gaps) is read as
    # integers; a mate id that is not a whole number is refused
    cands = _write_parquet(tmp_path / "c.parquet", HEADER, [(1, 1, 7, 0.9), (2, 1, 8, 0.4)])
    pq.write_table(pa.table({"probe_id": [1, 2], "mate_id": [7.0, None]}), tmp_path / "t.parquet")
    assert _evaluate([cands, "--truth", tmp_path / "t.parquet", "--gallery-size", 10,
                      "--out", tmp_path / "ok"]) == 0
    assert read_summary(tmp_path / "ok").backends[0].metrics.rank1_hit_rate.value == 1.0
    pq.write_table(pa.table({"probe_id": [1, 2], "mate_id": [7.5, None]}), tmp_path / "bad.parquet")
    capsys.readouterr()
    assert _evaluate([cands, "--truth", tmp_path / "bad.parquet", "--gallery-size", 10,
                      "--out", tmp_path / "no"]) == 2
    err = capsys.readouterr().err
    assert "7.5" in err and err.count("\n") == 1 and not (tmp_path / "no").exists()


# ---------------------------------------------------------------- fuzz

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

IDS = st.sampled_from(["a", "b", "c", "7", "", " d"])
CELL = st.one_of(IDS, st.integers(-1, 4), st.floats(-2, 2), st.just("nan"), st.text(max_size=3))


@st.composite
def lists_and_truth(draw):
    """Valid lists and truth, then (mostly) one cell, header or size spoiled."""
    probes = draw(st.lists(st.sampled_from("pqrstu"), min_size=1, max_size=5, unique=True))
    gallery = ["g1", "g2", "g3", "g4"]
    truth = [(p, draw(st.sampled_from(gallery + [""]))) for p in probes]
    rows = []
    for p in probes:
        cands = draw(st.lists(st.sampled_from(gallery), max_size=3, unique=True))
        scores = sorted(draw(st.lists(st.floats(-5, 5), min_size=len(cands), max_size=len(cands))),
                        reverse=True)
        rows += [(p, r + 1, c, sc) for r, (c, sc) in enumerate(zip(cands, scores))]
    header = list(HEADER)
    files = draw(st.integers(1, 2))
    sizes = [4 + 3 * i for i in range(files)]
    spoil = draw(st.integers(0, 5))
    if spoil == 1 and rows:
        i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 3))
        rows[i] = rows[i][:j] + (draw(CELL),) + rows[i][j + 1:]
    elif spoil == 2:
        truth[draw(st.integers(0, len(truth) - 1))] = (draw(CELL), draw(CELL))
    elif spoil == 3:
        header = draw(st.sampled_from([HEADER[::-1], HEADER[:3], ["probe_id", "rank", "id", "score"]]))
    elif spoil == 4:
        sizes = draw(st.lists(st.integers(-1, 5), min_size=1, max_size=3))
    return header, rows, truth, files, sizes


@settings(max_examples=15, deadline=None)
@given(lists_and_truth())
def test_evaluate_never_tracebacks_and_refusals_write_nothing(tmp_path_factory, case):
    header, rows, truth, files, sizes = case
    d = tmp_path_factory.mktemp("fz")
    # every file lists every row: the same lists at each gallery size
    cands = [_write_csv(d / f"c{i}.csv", header, rows) for i in range(files)]
    tr = _write_csv(d / "t.csv", ["probe_id", "mate_id"], truth)
    out = d / "out"
    code = _evaluate([*cands, "--truth", tr, "--out", out]
                     + [a for n in sizes for a in ("--gallery-size", n)])
    assert code in (0, 2)
    if code == 2:
        assert not out.exists()
    else:
        assert len(read_summary(out).backends) == files
