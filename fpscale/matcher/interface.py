"""The interface every search backend implements (``fpscale.matcher.registry`` builds them).

A backend is built from streamed gallery chunks (``add(ids, data)``), may
need a training sample first (``train``), and answers ``search(probes, L)``
with ``(ids, scores)`` arrays of shape (n_probes, L): ids int64 (-1 where
fewer than L records exist), scores float32 similarities, higher = more alike
(-inf padding). Float backends take float32 (n, d) vectors and score inner
products; binary backends take uint8 (n, bits/8) packed codes and score
bits - Hamming distance.
"""

from __future__ import annotations

import numpy as np

from fpscale.matcher.checks import MatcherInputError, check_codes, check_ids, check_k, check_vectors


class Backend:
    """Base class: argument checks and bookkeeping shared by all backends."""

    binary: bool = False
    name: str = "backend"

    def __init__(self, d: int, threads: int | None = None) -> None:
        """d: vector dimension (float) or code length in bits (binary)."""
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0:
            raise MatcherInputError(f"dimension must be a positive integer, got {d!r}")
        if self.binary and d % 64:
            raise MatcherInputError(f"binary codes must be a multiple of 64 bits, got {d}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise MatcherInputError(f"threads must be a positive integer, got {threads!r}")
        self.d = int(d)
        self.threads = threads
        self.ntotal = 0

    # -- checks ---------------------------------------------------------
    def _check_data(self, name: str, x) -> np.ndarray:
        if self.binary:
            return check_codes(name, x, self.d // 8)
        return check_vectors(name, x, self.d)

    def _check_search(self, probes, k) -> tuple[np.ndarray, int]:
        k = check_k(k)
        probes = self._check_data("probes", probes)
        if self.ntotal == 0:
            raise MatcherInputError(f"{self.name}: the gallery is empty; add records before searching")
        return probes, k

    # -- the interface --------------------------------------------------
    @property
    def needs_training(self) -> bool:
        return False

    def train(self, sample: np.ndarray) -> None:
        """Learn what the index needs (coarse centroids, codebooks) from a sample."""

    def add(self, ids, data) -> None:
        """Append records: ids (n,) int64, data (n, d) float32 or (n, bits/8) uint8."""
        data = self._check_data("gallery", data)
        ids = check_ids(ids, data.shape[0])
        self._add(ids, data)
        self.ntotal += data.shape[0]

    def search(self, probes, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k candidates per probe: (ids (q, k) int64, scores (q, k) float32)."""
        probes, k = self._check_search(probes, k)
        return self._search(probes, k)

    def set_search_params(self, params: str) -> None:
        """Search-time parameters, e.g. "nprobe=16" or "efSearch=64"."""
        if params:
            raise MatcherInputError(f"{self.name} takes no search parameters, got {params!r}")

    def export_state(self) -> dict[str, np.ndarray]:  # pragma: no cover - overridden
        """The built index as plain arrays (to checkpoint a long build)."""
        raise MatcherInputError(f"{self.name} cannot export its state")

    def import_state(self, state: dict[str, np.ndarray]) -> None:  # pragma: no cover
        """Restore what export_state returned."""
        raise MatcherInputError(f"{self.name} cannot import a state")

    # Whether export_rows and join_states exist, so that a checkpoint can
    # append what was added since the last one instead of rewriting the index
    appendable = False

    def export_rows(self, start: int) -> dict[str, np.ndarray]:  # pragma: no cover
        """The state of the records added after the first ``start``, in the
        order they were added: a part of what export_state returns."""
        raise MatcherInputError(f"{self.name} cannot export a part of its state")

    @staticmethod
    def join_states(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:  # pragma: no cover
        """export_state's arrays from export_rows parts taken in order."""
        raise MatcherInputError("this backend cannot join parts of a state")

    def import_parts(self, parts: list[dict[str, np.ndarray]]) -> None:
        """Restore the state export_rows parts make, taken in order."""
        self.import_state(self.join_states(parts))

    @staticmethod
    def memory_estimate(n: int, d: int) -> int:  # pragma: no cover - overridden
        """Bytes the built index will hold for n records of dimension d."""
        raise MatcherInputError("memory_estimate is defined by each backend")

    def nbytes(self) -> int:  # pragma: no cover - overridden
        """Bytes the index holds now."""
        raise MatcherInputError("nbytes is defined by each backend")

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:  # pragma: no cover
        raise MatcherInputError("_add is defined by each backend")

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise MatcherInputError("_search is defined by each backend")
