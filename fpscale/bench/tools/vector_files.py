"""Gallery and probe vectors (or packed codes) from files: ``.npy`` and the
big-ann-benchmarks binary formats.

- ``.npy``: a 2-D numpy array of float32, float64, uint8 or int8, read
  memory-mapped with ``allow_pickle=False``.
- ``.fbin`` / ``.u8bin`` / ``.i8bin``: two little-endian uint32 (n, d), then
  n x d float32 / uint8 / int8 values, row-major (the format of
  https://big-ann-benchmarks.com, ``benchmark/dataset_io.py`` there).

Nothing is read into memory whole: a file becomes a read-only memory map,
checked against its header and size (and, for floats, scanned for NaN and
infinity in blocks). Every failure is one ``VectorFileError`` line naming
the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpscale.bench.tools.evaluate import InputError

BIN_DTYPES = {".fbin": np.dtype("<f4"), ".u8bin": np.dtype("u1"), ".i8bin": np.dtype("i1")}
NPY_DTYPES = (np.dtype("<f4"), np.dtype("<f8"), np.dtype("u1"), np.dtype("i1"))
HEADER_BYTES = 8
FORMATS = ".npy, .fbin, .u8bin or .i8bin"
SCAN_ROWS = 1 << 16  # rows per block when scanning or converting a mapped file


class VectorFileError(InputError):
    """A vector file that cannot be searched as it is."""


@dataclass(frozen=True)
class VectorFile:
    """A checked vector file: its path, format (the suffix) and the
    read-only (n, d) memory map of its values."""

    path: Path
    format: str
    data: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.data.shape[0])

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])


def _bin_hint(size: int, n: int, d: int, suffix: str) -> str:
    """Which other binary format the file's size would fit, if any."""
    for other, dt in BIN_DTYPES.items():
        if other != suffix and size == HEADER_BYTES + n * d * dt.itemsize:
            return f"; its size fits a {other} file ({dt.name} values)"
    return ""


def _read_bin(path: Path) -> np.ndarray:
    dt = BIN_DTYPES[path.suffix]
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise VectorFileError(f"{path}: {size} bytes, shorter than the 8-byte header (n, d)")
    with open(path, "rb") as f:
        n, d = (int(v) for v in np.frombuffer(f.read(HEADER_BYTES), dtype="<u4"))
    want = HEADER_BYTES + n * d * dt.itemsize
    if size != want:
        raise VectorFileError(f"{path}: the header says {n:,} x {d:,} {dt.name} values ({want:,} bytes "
                              f"with the header) but the file has {size:,} bytes"
                              f"{_bin_hint(size, n, d, path.suffix)}")
    if n == 0 or d == 0:
        raise VectorFileError(f"{path}: holds no vectors (header n = {n}, d = {d})")
    return np.memmap(path, dtype=dt, mode="r", offset=HEADER_BYTES, shape=(n, d))


def _read_npy(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # ast's SyntaxWarning on a damaged header: not a second line
            warnings.simplefilter("ignore")
            a = np.load(path, mmap_mode="r", allow_pickle=False)
    # numpy parses an untrusted header with ast, tokenize and shape arithmetic: a
    # damaged one fails in many ways (ValueError, TypeError, TokenError, OverflowError, ...)
    except Exception as e:  # noqa: BLE001
        raise VectorFileError(f"{path}: not a readable .npy array ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive under a .npy name
        raise VectorFileError(f"{path}: not a .npy array (an archive of several arrays?)")
    if a.dtype not in NPY_DTYPES:
        raise VectorFileError(f"{path}: dtype {a.dtype}; fpscale reads float32, float64, uint8 or "
                              "int8 (little-endian)")
    if a.ndim != 2:
        raise VectorFileError(f"{path}: shape {a.shape}; vectors are a 2-D array (n, d)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise VectorFileError(f"{path}: holds no vectors (shape {a.shape})")
    return a


def _check_finite(path: Path, data: np.ndarray) -> None:
    """Float values finite (as float32, the backends' type), block by block."""
    if data.dtype.kind != "f":
        return
    for a in range(0, data.shape[0], SCAN_ROWS):
        with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
            block = np.asarray(data[a:a + SCAN_ROWS], dtype=np.float32)
        bad = ~np.isfinite(block)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise VectorFileError(f"{path}: row {a + r}, column {c} holds {float(data[a + r, c])!r}, "
                                  "not a finite float32")


def read_vectors(path: str | Path) -> VectorFile:
    """A checked vector file (format from its suffix: .npy, .fbin, .u8bin, .i8bin)."""
    path = Path(path)
    if path.suffix not in BIN_DTYPES and path.suffix != ".npy":
        raise VectorFileError(f"{path}: unknown format {path.suffix or '(no suffix)'!r}; give {FORMATS}")
    if not path.is_file():
        raise VectorFileError(f"{path}: no such file")
    try:
        data = _read_npy(path) if path.suffix == ".npy" else _read_bin(path)
    except PermissionError as e:
        raise VectorFileError(f"{path}: cannot be read ({e.strerror})") from None
    _check_finite(path, data)
    return VectorFile(path, path.suffix, data)


def check_pair(gallery: VectorFile, probes: VectorFile) -> None:
    """Gallery and probes of the same kind: the same dtype and dimension."""
    if gallery.data.dtype != probes.data.dtype:
        raise VectorFileError(f"{probes.path}: {probes.data.dtype.name} values, but the gallery "
                              f"{gallery.path} holds {gallery.data.dtype.name}; give both in one type")
    if gallery.dim != probes.dim:
        raise VectorFileError(f"{probes.path}: dimension {probes.dim}, but the gallery {gallery.path} "
                              f"has {gallery.dim}")


def as_backend_input(vf: VectorFile, binary: bool, rows: slice) -> np.ndarray:
    """Rows of a file as a backend takes them: float32 (n, d) vectors, or for
    a binary backend the uint8 (n, bytes) packed codes as stored."""
    block = vf.data[rows]
    if binary:
        return np.ascontiguousarray(block)
    return np.ascontiguousarray(block, dtype=np.float32)


def record_width(vf: VectorFile, binary: bool, backend: str) -> int:
    """The d a backend is built with: the dimension, or for a binary backend
    the code length in bits (uint8 files only, a multiple of 64 bits)."""
    if not binary:
        return vf.dim
    if vf.data.dtype != np.uint8:
        raise VectorFileError(f"backend {backend} searches packed binary codes: {vf.path} must hold "
                              f"uint8 (.u8bin or a uint8 .npy), it holds {vf.data.dtype.name}")
    if vf.dim % 8:
        raise VectorFileError(f"backend {backend} searches codes of whole 64-bit words: {vf.path} has "
                              f"{vf.dim} bytes ({vf.dim * 8} bits) per row")
    return vf.dim * 8
