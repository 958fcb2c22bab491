"""Results as tables: duckdb and pandas read every Parquet and CSV table and
summary.json as they are; the shipped JSON Schema is the code's and
validates the summary; the long table holds what the npz table holds."""

import json
from pathlib import Path

import duckdb
import jsonschema
import numpy as np
import pandas as pd
import pytest

from fpscale.bench.store.files import read_npz
from fpscale.bench.store.schema import schema_text
from fpscale.bench.store.summary import SCHEMA_VERSION, read_summary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_run(rescored_run):
    return rescored_run[1]


def _tables(out: Path) -> list[Path]:
    return sorted(out.glob("*.parquet")) + sorted(out.glob("*.csv"))


def test_every_table_is_written(small_run):
    names = {p.name for p in _tables(small_run)}
    for key in ("numba-flat", "numba-flat+minutiae"):
        assert {f"searches_{key}.parquet", f"det_{key}.csv", f"cmc_{key}.csv"} <= names
    assert "operating_points.csv" in names
    assert not list(small_run.glob(".*.tmp"))


def test_duckdb_and_pandas_read_every_table(small_run):
    for path in _tables(small_run):
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
        con = duckdb.connect()
        n = con.execute(f"select count(*) from {reader}(?)", [str(path)]).fetchone()[0]
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        assert n == len(df) > 0, path.name


def test_duckdb_reads_the_summary_as_it_is(small_run):
    path = str(small_run / "summary.json")
    con = duckdb.connect()
    version, fpir, model = con.execute(
        "select schema_version, backends[1].metrics.operating_points[1].fpir.value, "
        "projection.two_index.model from read_json_auto(?)", [path]).fetchone()
    s = read_summary(small_run)
    assert version == SCHEMA_VERSION
    assert fpir == pytest.approx(s.backends[0].metrics.operating_points[0].fpir.value)
    assert model == s.projection["two_index"].model
    cells = con.execute("select individuality.cells from read_json_auto(?)", [path]).fetchone()[0]
    assert cells == s.individuality.cells
    assert len(pd.read_json(path, typ="series")) > 0


def test_summary_records_the_host(small_run):
    h = read_summary(small_run).host
    assert h.cpu_model and h.timestamp.endswith("+00:00")
    assert any(p.user_api == "blas" and p.architecture for p in h.thread_pools)
    assert h.git_commit is None or len(h.git_commit.removesuffix("-dirty")) == 40


def test_shipped_schema_is_the_codes_and_validates_the_summary(small_run):
    shipped = (ROOT / "docs" / "summary.schema.json").read_text()
    assert shipped == schema_text(), "regenerate: python -m fpscale.bench.store.schema > docs/summary.schema.json"
    schema = json.loads(shipped)
    jsonschema.Draft202012Validator.check_schema(schema)
    d = json.loads((small_run / "summary.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(d)
    d["backends"][0]["metrics"]["searches"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, schema)


def test_the_long_table_holds_what_the_npz_holds(small_run):
    for key in ("numba-flat", "numba-flat+minutiae"):
        z = read_npz(small_run / f"searches_{key}.npz")
        df = pd.read_parquet(small_run / f"searches_{key}.parquet")
        listed = z["cand_ids"] >= 0
        assert len(df.dropna(subset=["rank"])) == listed.sum()
        q, r = np.nonzero(listed)
        got = df.dropna(subset=["rank"]).sort_values(["probe", "rank"])
        assert np.array_equal(got["probe"], q) and np.array_equal(got["rank"], r + 1)
        assert np.array_equal(got["candidate_id"], z["cand_ids"][listed])
        assert np.array_equal(got["score"].to_numpy(np.float32), z["cand_scores"][listed])
        per = df.groupby("probe").first()
        assert np.array_equal(per["mate"], z["mate"]) and np.array_equal(per["mate_rank"], z["mate_rank"])
        ms = per["mate_score"].fillna(-np.inf).to_numpy()
        assert np.array_equal(ms, z["mate_score"])


def test_csv_tables_hold_the_summary(small_run):
    s = read_summary(small_run)
    ops = pd.read_csv(small_run / "operating_points.csv")
    for b in s.backends:
        mine = ops[ops.key == b.key]
        assert list(mine.target_fpir) == [op.target_fpir for op in b.metrics.operating_points]
        assert list(mine.fnir) == pytest.approx([op.fnir.value for op in b.metrics.operating_points])
        cmc = pd.read_csv(small_run / f"cmc_{b.key}.csv")
        assert list(cmc.hit_rate) == pytest.approx(b.metrics.cmc)
        det = pd.read_csv(small_run / f"det_{b.key}.csv", float_precision="round_trip")
        assert list(det.threshold) == b.metrics.det.threshold


def test_a_summary_of_schema_version_1_is_read(small_run, tmp_path):
    d = json.loads((small_run / "summary.json").read_text())
    del d["schema_version"]
    ind = d["individuality"]
    for old, new in (("M", "cells"), ("l", "direction_agreement"), ("m", "minutiae_probe"),
                     ("n", "minutiae_gallery")):
        ind[old] = ind.pop(new)
    (tmp_path / "summary.json").write_text(json.dumps(d))
    s = read_summary(tmp_path)
    assert s.schema_version == SCHEMA_VERSION and s.individuality.cells == ind["M"]


def test_a_searches_table_written_in_slices_is_the_table_built_whole(tmp_path, monkeypatch):
    # more searches than a slice, an empty list and labels: the file, read
    # back, is the table built in one piece, with one row group a slice
    import pyarrow.parquet as pq

    from fpscale.bench.store import tables
    from fpscale.bench.store.manifest import open_for_run
    from fpscale.bench.store.tables import SearchTable, searches_arrow, write_searches_parquet
    rng = np.random.default_rng(5)
    Q, L, N = 23, 4, 50
    ids = rng.integers(0, N, (Q, L))
    ids[3] = -1
    ids[7, 2:] = -1
    scores = np.where(ids >= 0, rng.random((Q, L)), -np.inf).astype(np.float32)
    mate = np.where(rng.random(Q) < 0.5, rng.integers(0, N, Q), -1)
    rank = rng.integers(0, L + 1, Q)
    ms = np.where(rank > 0, rng.random(Q), -np.inf)
    t = SearchTable(ids, scores, mate, rank, ms, [f"p{q}" for q in range(Q)],
                    [f"c{c}" for c in range(N)])
    monkeypatch.setattr(tables, "TABLE_SLICE", 5)
    with open_for_run(tmp_path / "r", "fp", "test", False) as folder:
        write_searches_parquet(folder, "s.parquet", t)
        assert folder.problem("s.parquet") is None
    f = pq.ParquetFile(tmp_path / "r" / "s.parquet")
    assert f.metadata.num_row_groups == 5
    assert f.read().equals(searches_arrow(t))
