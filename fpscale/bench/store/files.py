"""Atomic writes of results files: JSON, text, bytes, CSV, npz and Parquet.

Every file is written to a temporary name in the same folder, flushed to
disk and renamed over its final name, so a crash leaves either the old file
or the new one, never a truncated file that looks valid. Each write returns
the file's size and sha256, which the manifest records so that a resumed
run can tell a damaged file from a good one.

Files get the mode the user's umask gives a new file (mkstemp alone would
leave them readable by their owner only). Nothing is written through a
symbolic link: a link at the file's name or at its folder is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np


class ResultsError(Exception):
    """A results folder that cannot be used as asked."""


def _current_umask() -> int:
    # os.umask can only be read by setting it; put it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()
TMP_SUFFIX = ".fpscale-tmp"


def tmp_name(path: Path) -> Path:
    """The temporary name a file is written under before its rename."""
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def _check_target(path: Path) -> None:
    parent = path.parent
    if parent.is_symlink():
        raise ResultsError(f"{parent} is a symbolic link; fpscale does not write through links")
    if parent.exists() and not parent.is_dir():
        raise ResultsError(f"{parent} is not a folder")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ResultsError(f"{path} is not a plain file; fpscale does not write over it")


def file_digest(path: Path) -> dict:
    """{"size": bytes, "sha256": hex} of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return {"size": size, "sha256": h.hexdigest()}


def _atomic(path: Path, write) -> dict:
    path = Path(path)
    _check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_target(path)
        # one writer per folder (the results folder's lock), so the
        # temporary name can be fixed: a crash leaves a name fpscale knows
        tmp = tmp_name(path)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise ResultsError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        info = file_digest(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ResultsError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def write_json(path: Path, obj: Any) -> dict:
    """Write JSON atomically (NaN written as null); returns size and sha256."""
    data = json.dumps(jsonable(obj), indent=2, sort_keys=False).encode()
    return _atomic(Path(path), lambda f: f.write(data + b"\n"))


def write_text(path: Path, text: str) -> dict:
    """Write UTF-8 text atomically; returns size and sha256."""
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_bytes(path: Path, data: bytes) -> dict:
    """Write bytes atomically; returns size and sha256."""
    return _atomic(Path(path), lambda f: f.write(data))


def write_npz(path: Path, **arrays: np.ndarray) -> dict:
    """Write an uncompressed npz atomically (plain arrays only: no pickles);
    returns size and sha256."""
    for k, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise ResultsError(f"{k}: object arrays are not written")
    return _atomic(Path(path), lambda f: np.savez(f, **arrays))


def write_csv(path: Path, header: list[str], rows) -> dict:
    """Write a CSV table atomically: a header line, then one line per row;
    None and non-finite numbers are written as empty fields (NULL to
    duckdb, NaN to pandas), floats with every digit (repr). Returns size
    and sha256."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_csv_value(v) for v in r])
    return write_text(path, buf.getvalue())


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if np.isfinite(v) else ""
    return v


def write_parquet(path: Path, tables) -> dict:
    """Write a pyarrow Table, or an iterable of Tables of one schema (each a
    row group; only one is held at a time), as a Parquet file atomically
    (zstd-compressed); returns size and sha256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(f) -> None:
        parts = iter([tables] if isinstance(tables, pa.Table) else tables)
        first = next(parts)
        with pq.ParquetWriter(f, first.schema, compression="zstd") as w:
            w.write_table(first)
            del first
            for t in parts:
                w.write_table(t)
    return _atomic(Path(path), write)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (pickles refused); ResultsError when it is
    not a readable npz."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError,
            io.UnsupportedOperation, zlib.error, struct.error, NotImplementedError,
            MemoryError, RuntimeError) as e:
        raise ResultsError(f"{path} is not a readable npz file ({e})") from None


def is_plain_file(path: Path) -> bool:
    """A regular file, not a link."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
