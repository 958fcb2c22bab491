"""Results as tables that any data tool reads: Parquet and CSV.

- ``searches_<key>.parquet``: one row per candidate (long format): probe,
  mate (-1 non-mated), mate_rank (0 = not listed), mate_score (null when
  not listed), rank (1..L), candidate_id, score. A search whose list is
  empty has one row with null rank, candidate_id and score, so that every
  search is there. Lists from ``fpscale evaluate`` add the ids of the input
  files: probe_id, candidate_label and mate_label (text).
- ``operating_points.csv``: every row of the results at every FPIR target.
- ``det_<key>.csv`` (threshold, fnir, fpir) and ``cmc_<key>.csv`` (rank,
  hit_rate).

The npz tables beside them hold the same per-search data as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fpscale.bench.measure.metrics import MetricsSummary, Rate
from fpscale.bench.store.manifest import ResultsFolder

OPERATING_POINTS = "operating_points.csv"


@dataclass(frozen=True)
class SearchTable:
    """The per-search data of one row of the results: candidate lists ids,
    scores (Q, L) padded with -1 / -inf, mate (Q,), the mate's rank and
    score (Q,); labels: the input files' probe ids (Q,) and candidate ids
    (one per dense candidate id), or None for fpscale's own runs."""

    ids: np.ndarray
    scores: np.ndarray
    mate: np.ndarray
    mate_rank: np.ndarray
    mate_score: np.ndarray
    probe_labels: np.ndarray | None = None
    candidate_labels: np.ndarray | None = None


# searches per row group of a searches table: the table is built and written
# a slice at a time, so that writing it holds one slice's columns whatever
# the number of searches
TABLE_SLICE = 500


def searches_arrow(t: SearchTable, start: int = 0, stop: int | None = None):
    """The long-format pyarrow Table of one row's searches start..stop-1
    (all of them by default)."""
    import pyarrow as pa
    stop = len(t.ids) if stop is None else stop
    Q, L = stop - start, t.ids.shape[1]
    ids, scores = t.ids[start:stop], t.scores[start:stop]
    listed = ids >= 0
    empty = ~listed.any(axis=1)
    # one row per listed candidate, and one per search with an empty list
    q = np.concatenate([np.repeat(np.arange(Q), L)[listed.ravel()], np.flatnonzero(empty)])
    order = np.argsort(q, kind="stable")
    q = q[order]
    n_empty = int(empty.sum())
    rank = np.concatenate([np.tile(np.arange(1, L + 1), Q)[listed.ravel()],
                           np.zeros(n_empty, np.int64)])[order]
    cand = np.concatenate([ids[listed], np.full(n_empty, -1, ids.dtype)])[order]
    score = np.concatenate([scores[listed], np.zeros(n_empty, scores.dtype)])[order]
    none = rank == 0
    q = q + start  # search numbers in the whole table
    ms = np.asarray(t.mate_score)
    cols = {
        "probe": pa.array(q.astype(np.int64)),
        "mate": pa.array(np.asarray(t.mate, np.int64)[q]),
        "mate_rank": pa.array(np.asarray(t.mate_rank, np.int64)[q]),
        "mate_score": pa.array(ms[q], mask=~np.isfinite(ms[q])),
        "rank": pa.array(rank.astype(np.int64), mask=none),
        "candidate_id": pa.array(cand.astype(np.int64), mask=none),
        "score": pa.array(score, mask=none),
    }
    if t.probe_labels is not None:
        cols["probe_id"] = pa.array(np.asarray(t.probe_labels, dtype=object)[q].tolist(), pa.string())
    if t.candidate_labels is not None:
        labels = np.asarray(t.candidate_labels, dtype=object)
        cols["candidate_label"] = pa.array(
            [None if c < 0 else labels[c] for c in cand.tolist()], pa.string())
        cols["mate_label"] = pa.array(
            [None if m < 0 else labels[m] for m in np.asarray(t.mate)[q].tolist()], pa.string())
    return pa.table(cols)


def write_searches_parquet(folder: ResultsFolder, rel: str, table: SearchTable) -> None:
    """``searches_<key>.parquet``: the long-format table of one row's
    searches, written TABLE_SLICE searches at a time (one row group each)."""
    Q = len(table.ids)
    # the labels as object arrays once, not once a slice
    table = replace(table, **{k: np.asarray(v, dtype=object) for k in ("probe_labels", "candidate_labels")
                              if (v := getattr(table, k)) is not None})
    folder.write_parquet(rel, (searches_arrow(table, a, min(a + TABLE_SLICE, Q))
                               for a in range(0, max(Q, 1), TABLE_SLICE)))


def _rate_cells(r: Rate | None) -> list:
    if r is None:
        return [None] * 5
    return [r.value, r.ci95[0], r.ci95[1], r.count, r.of]


def write_metric_tables(folder: ResultsFolder, rows: list[tuple[str, MetricsSummary]]) -> None:
    """operating_points.csv, det_<key>.csv and cmc_<key>.csv for every
    (key, metrics) row of the results."""
    header = ["key", "target_fpir", "threshold", "resolved",
              "fnir", "fnir_lo", "fnir_hi", "fnir_count", "fnir_of",
              "fpir", "fpir_lo", "fpir_hi", "fpir_count", "fpir_of", "sel"]
    ops = [[key, op.target_fpir, op.threshold, op.resolved, *_rate_cells(op.fnir),
            *_rate_cells(op.fpir), op.sel]
           for key, m in rows for op in m.operating_points]
    folder.write_csv(OPERATING_POINTS, header, ops)
    for key, m in rows:
        d = m.det
        folder.write_csv(f"det_{key}.csv", ["threshold", "fnir", "fpir"],
                         zip(d.threshold, d.fnir, d.fpir))
        folder.write_csv(f"cmc_{key}.csv", ["rank", "hit_rate"],
                         ((r + 1, v) for r, v in enumerate(m.cmc)))
