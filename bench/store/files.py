"""Atomic writes of results files: JSON, text, CSV, npz and Parquet.

Every file is written to a temporary name in the same folder, flushed to
disk and renamed over its final name, so a crash leaves either the old file
or the new one, never a truncated file that looks valid.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class ResultsError(Exception):
    """A results folder that cannot be used as asked."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (NaN written as null)."""
    data = json.dumps(jsonable(obj), indent=2, sort_keys=False).encode()
    _atomic(Path(path), lambda f: f.write(data + b"\n"))


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    _atomic(Path(path), lambda f: f.write(text.encode()))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed npz atomically (plain arrays only: no pickles)."""
    for k, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise ResultsError(f"{k}: object arrays are not written")
    _atomic(Path(path), lambda f: np.savez(f, **arrays))


def write_csv(path: Path, header: list[str], rows) -> None:
    """Write a CSV table atomically: a header line, then one line per row;
    None and non-finite numbers are written as empty fields (NULL to
    duckdb, NaN to pandas), floats with every digit (repr)."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_csv_value(v) for v in r])
    write_text(path, buf.getvalue())


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if np.isfinite(v) else ""
    return v


def write_parquet(path: Path, table) -> None:
    """Write a pyarrow Table as a Parquet file atomically (zstd-compressed)."""
    import pyarrow.parquet as pq
    _atomic(Path(path), lambda f: pq.write_table(table, f, compression="zstd"))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (pickles refused)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def jsonable(o):
    """Plain JSON values: numpy scalars and arrays as numbers and lists,
    non-finite numbers as None."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if np.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    return o
