"""Argument checks shared by the backends: one clear error, before any work."""

from __future__ import annotations

import numpy as np


class MatcherInputError(ValueError):
    """A caller passed an array or parameter the matcher cannot use."""


def check_k(k) -> int:
    """Candidate list length L: a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise MatcherInputError(f"L (candidate list length) must be a positive integer, got {k!r}")
    return int(k)


def _check_matrix(name: str, x, dtype, dtype_note: str, cols: str) -> None:
    if not isinstance(x, np.ndarray):
        raise MatcherInputError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise MatcherInputError(f"{name} must have dtype {np.dtype(dtype).name}{dtype_note}, got {x.dtype}")
    if x.ndim != 2:
        raise MatcherInputError(f"{name} must be 2-D (n, {cols}), got shape {x.shape}")


def check_vectors(name: str, x, dim: int | None = None) -> np.ndarray:
    """float32 (n, d) C-contiguous, finite; dim checked when given."""
    _check_matrix(name, x, np.float32, "", "d")
    if dim is not None and x.shape[1] != dim:
        raise MatcherInputError(f"{name} has dimension {x.shape[1]}, the index expects {dim}")
    if x.size and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise MatcherInputError(f"{name} holds a non-finite value at row {bad[0]}, column {bad[1]}")
    return np.ascontiguousarray(x)


def check_codes(name: str, x, nbytes: int | None = None) -> np.ndarray:
    """uint8 (n, bytes) packed binary codes, a whole number of 64-bit words."""
    _check_matrix(name, x, np.uint8, " (packed bits)", "bytes")
    if x.shape[1] == 0 or x.shape[1] % 8:
        raise MatcherInputError(f"{name} has {x.shape[1] * 8} bits per code; it must be a positive multiple of 64")
    if nbytes is not None and x.shape[1] != nbytes:
        raise MatcherInputError(f"{name} has {x.shape[1] * 8} bits per code, the index expects {nbytes * 8}")
    return np.ascontiguousarray(x)


def check_ids(ids, n: int) -> np.ndarray:
    """int64 (n,) non-negative identity ids."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise MatcherInputError(f"ids must have shape ({n},), got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise MatcherInputError(f"ids must be integers, got {ids.dtype}")
    if n and ids.min() < 0:
        raise MatcherInputError("ids must be non-negative (-1 marks padding)")
    return np.ascontiguousarray(ids, dtype=np.int64)
