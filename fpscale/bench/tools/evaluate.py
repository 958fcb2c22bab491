"""``fpscale evaluate``: reading and checking another matcher's candidate lists.

Input files (CSV with a header line, or Parquet):

- candidates: ``probe_id, rank, candidate_id, score``, one row per
  candidate, ranks 1..L per search with no gap, best first (scores never
  increase with rank; ties are allowed). Other columns are ignored.
- truth: ``probe_id, mate_id``, one row per search; ``mate_id`` empty
  (or null) for a non-mated search. A search in the truth with no row in
  a candidates file returned an empty list there.

Ids are compared as text ("17" in a CSV equals 17 in a Parquet file; a
float column of whole numbers, as pandas writes integers with gaps, counts
as integers). Anything else is refused with one ``InputError`` line naming
the file, the column and the first offending value, before anything is
written. The lists are then mapped to the dense arrays fpscale's metrics
take: ids (Q, L) int64 padded with -1, scores (Q, L) float64 padded with
-inf, mate (Q,) the dense id of the mate or -1.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CANDIDATE_COLUMNS = ("probe_id", "rank", "candidate_id", "score")
TRUTH_COLUMNS = ("probe_id", "mate_id")
MATCHER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class InputError(Exception):
    """A candidate-list or truth file that cannot be evaluated as it is."""


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``fpscale evaluate`` was asked: candidate files with the gallery
    size each searched (same order), the truth file, the results folder, the
    matcher's name, [target] values and a scenario file to take [target],
    [metrics] and the projection's study settings from."""

    candidates: tuple[Path, ...]
    truth: Path
    gallery_sizes: tuple[int, ...]
    out: Path
    matcher: str = "matcher"
    target: dict = field(default_factory=dict)
    scenario: Path | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class CandidateLists:
    """One file's lists over the truth's searches, as dense arrays."""

    path: Path
    sha256: str
    gallery_size: int
    rows: int
    ids: np.ndarray     # (Q, L) int64, -1 padded
    scores: np.ndarray  # (Q, L) float64, -inf padded


@dataclass(frozen=True)
class Inputs:
    """Everything read: the searches' ids (Q,), the candidate ids behind the
    dense ids (C,), each search's mate (dense id or -1), and the lists of
    each file in increasing gallery size."""

    truth: Path
    truth_sha256: str
    probe_ids: np.ndarray
    candidate_ids: np.ndarray
    mate: np.ndarray
    lists: list[CandidateLists]


# ---------------------------------------------------------------- reading

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def read_table(path: Path, columns: tuple[str, ...]):
    """The named columns of a CSV or Parquet file as a pyarrow Table (CSV
    columns as text); InputError when it cannot be read or lacks a column."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if _is_parquet(path):
            table = pq.read_table(path)
        else:
            # every column as text; fpscale converts and checks them itself
            header = pcsv.open_csv(path).schema.names
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False,
                quoted_strings_can_be_null=False))
    except (OSError, pa.ArrowException, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a readable CSV or Parquet file ({_one_line(e)})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; needs {', '.join(columns)} "
                         f"(has {', '.join(table.column_names) or 'none'})")
    return table.select(list(columns))


def _ids(path: Path, table, name: str, nullable: bool = False) -> np.ndarray:
    """A column of ids as text (object array; None where empty and nullable)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    col = table.column(name).combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_floating(col.type):
        vals = col.drop_null().to_numpy(zero_copy_only=False)
        bad = vals[~np.isfinite(vals) | (vals != np.round(vals))]
        if len(bad):
            raise InputError(f"{path}: {name} {float(bad[0])!r} is not an id (ids are text or whole numbers)")
        col = col.cast(pa.int64())
    if pa.types.is_integer(col.type):
        col = col.cast(pa.string())
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"{path}: {name} has type {col.type}; ids are text or whole numbers")
    out = np.array(col.to_pylist(), dtype=object)
    empty = np.array([v is None or v == "" for v in out], dtype=bool)
    if empty.any() and not nullable:
        raise InputError(f"{path}: {name} is empty in data row {int(np.argmax(empty)) + 1}")
    padded = [v for v in out[~empty] if v != v.strip()]
    if padded:
        raise InputError(f"{path}: {name} {padded[0]!r} has spaces around it")
    out[empty] = None
    return out


def _numbers(path: Path, table, name: str, kind: str) -> np.ndarray:
    """rank (int64, whole numbers) or score (float64) of every row."""
    import pyarrow as pa
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise InputError(f"{path}: {name} is empty in {col.null_count} row(s)")
    try:
        vals = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError) as e:
        raise InputError(f"{path}: {name} must be numbers ({_one_line(e)})") from None
    if kind == "score":
        bad = ~np.isfinite(vals)
        if bad.any():
            raise InputError(f"{path}: score {float(vals[bad][0])!r} in data row {int(np.argmax(bad)) + 1} "
                             "is not a finite number")
        return vals
    bad = ~np.isfinite(vals) | (vals != np.round(vals)) | (vals < 1)
    if bad.any():
        raise InputError(f"{path}: rank {col[int(np.argmax(bad))].as_py()!r} in data row "
                         f"{int(np.argmax(bad)) + 1} is not a whole number >= 1")
    return vals.astype(np.int64)


def read_truth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probe ids (Q,), mate ids (Q,) with None for a non-mated search)."""
    table = read_table(path, TRUTH_COLUMNS)
    if table.num_rows == 0:
        raise InputError(f"{path}: no searches")
    probes = _ids(path, table, "probe_id")
    mates = _ids(path, table, "mate_id", nullable=True)
    uniq, counts = np.unique(probes.astype(str), return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{path}: probe_id {str(uniq[np.argmax(counts > 1)])!r} is listed twice")
    return probes, mates


# ---------------------------------------------------------------- checking lists

def _lookup(values: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Index of each value in a sorted vocabulary (text), -1 where absent."""
    v = values.astype(str)
    if len(vocabulary) == 0:
        return np.full(len(v), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(vocabulary, v), 0, len(vocabulary) - 1)
    return np.where(vocabulary[pos] == v, pos, -1).astype(np.int64)


@dataclass(frozen=True)
class _Rows:
    """One candidates file's rows, sorted by search then rank."""

    path: Path
    q: np.ndarray
    rank: np.ndarray
    cand: np.ndarray  # candidate ids as text
    score: np.ndarray


def _read_rows(path: Path, probe_vocab: np.ndarray, probe_order: np.ndarray) -> _Rows:
    table = read_table(path, CANDIDATE_COLUMNS)
    if table.num_rows == 0:
        raise InputError(f"{path}: no candidates")
    probes = _ids(path, table, "probe_id")
    cand = _ids(path, table, "candidate_id")
    rank = _numbers(path, table, "rank", "rank")
    score = _numbers(path, table, "score", "score")
    pos = _lookup(probes, probe_vocab)
    if (pos < 0).any():
        unknown = np.unique(probes[pos < 0].astype(str))
        raise InputError(f"{path}: probe_id {str(unknown[0])!r} is not in the truth file "
                         f"({len(unknown)} such search(es))")
    q = probe_order[pos]
    order = np.lexsort((rank, q))
    return _Rows(path, q[order], rank[order], cand[order], score[order])


def _check_rows(rows: _Rows, probe_ids: np.ndarray, gallery_size: int) -> None:
    """Ranks 1..L per search without gaps or repeats, scores best first, no
    candidate twice in one list, no list or gallery smaller than its lists."""
    path, q, rank = rows.path, rows.q, rows.rank
    same = np.r_[False, q[1:] == q[:-1]]
    starts = np.flatnonzero(~same)
    expected = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)])) + 1
    rep = same & np.r_[False, rank[1:] == rank[:-1]]
    if rep.any():
        i = int(np.argmax(rep))
        raise InputError(f"{path}: probe_id {probe_ids[q[i]]!r} lists rank {int(rank[i])} twice")
    gap = rank != expected
    if gap.any():
        i = int(np.argmax(gap))
        raise InputError(f"{path}: probe_id {probe_ids[q[i]]!r} has ranks that are not 1..L "
                         f"(rank {expected[i]} missing)")
    up = same & np.r_[False, rows.score[1:] > rows.score[:-1]]
    if up.any():
        i = int(np.argmax(up))
        raise InputError(f"{path}: probe_id {probe_ids[q[i]]!r}: score {float(rows.score[i])!r} at rank "
                         f"{rank[i]} is above {float(rows.score[i - 1])!r} at rank {rank[i - 1]} "
                         "(lists are best first)")
    key = np.lexsort((rows.cand.astype(str), q))
    dup = np.r_[False, (q[key][1:] == q[key][:-1]) & (rows.cand[key][1:] == rows.cand[key][:-1])]
    if dup.any():
        i = key[int(np.argmax(dup))]
        raise InputError(f"{path}: probe_id {probe_ids[q[i]]!r} lists candidate_id {rows.cand[i]!r} twice")
    if rank.max() > gallery_size:
        raise InputError(f"{path}: lists of {int(rank.max())} candidates from a gallery of {gallery_size}; "
                         "check --gallery-size")
    distinct = len(np.unique(rows.cand.astype(str)))
    if distinct > gallery_size:
        raise InputError(f"{path}: {distinct} distinct candidate_id values from a gallery of "
                         f"{gallery_size}; check --gallery-size")


def _dense(rows: _Rows, vocab: np.ndarray, Q: int) -> tuple[np.ndarray, np.ndarray]:
    L = int(rows.rank.max())
    ids = np.full((Q, L), -1, dtype=np.int64)
    scores = np.full((Q, L), -np.inf, dtype=np.float64)
    ids[rows.q, rows.rank - 1] = _lookup(rows.cand, vocab)
    scores[rows.q, rows.rank - 1] = rows.score
    return ids, scores


def check_options(opts: EvaluateOptions) -> None:
    """The command's own arguments: InputError naming the first mistake."""
    if not MATCHER_NAME.match(opts.matcher):
        raise InputError(f"--matcher {opts.matcher!r}: letters, digits and . _ + - only "
                         "(it names the results files), at most 64")
    if len(opts.gallery_sizes) != len(opts.candidates):
        raise InputError(f"{len(opts.candidates)} candidates file(s) and {len(opts.gallery_sizes)} "
                         "--gallery-size value(s): give --gallery-size once per file, in the same order")
    for n in opts.gallery_sizes:
        if n < 1:
            raise InputError(f"--gallery-size {n}: a gallery holds at least 1 record")
    if len(set(opts.gallery_sizes)) != len(opts.gallery_sizes):
        raise InputError(f"--gallery-size {', '.join(map(str, opts.gallery_sizes))}: one file per "
                         "gallery size (the sizes must differ)")


def read_inputs(opts: EvaluateOptions) -> Inputs:
    """Read and check every input file; the lists in increasing gallery size."""
    check_options(opts)
    probe_ids, mate_ids = read_truth(opts.truth)
    text = probe_ids.astype(str)
    probe_vocab, probe_order = np.unique(text, return_index=True)
    files = sorted(zip(opts.gallery_sizes, opts.candidates), key=lambda x: x[0])
    rows = []
    for n, path in files:
        r = _read_rows(Path(path), probe_vocab, probe_order)
        _check_rows(r, probe_ids, n)
        rows.append((n, r))
    mated = np.array([m is not None for m in mate_ids], dtype=bool)
    vocab = np.unique(np.concatenate([r.cand.astype(str) for _, r in rows]
                                     + [mate_ids[mated].astype(str)]))
    mate = np.full(len(probe_ids), -1, dtype=np.int64)
    mate[mated] = _lookup(mate_ids[mated], vocab)
    lists = []
    for n, r in rows:
        ids, scores = _dense(r, vocab, len(probe_ids))
        lists.append(CandidateLists(r.path, _sha256(r.path), n, len(r.q), ids, scores))
    return Inputs(Path(opts.truth), _sha256(Path(opts.truth)), probe_ids, vocab, mate, lists)
