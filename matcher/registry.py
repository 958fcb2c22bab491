"""Backend names and every fact about them, in one place.

A backend name is "numba-flat", "numba-hamming" or "faiss:<index_factory
string>" (binary factories start with "B", e.g. "faiss:BFlat"). This module
says what a name is (binary or float, exact or approximate), the label its
results files carry, how many bytes its index holds, and builds it.
"""

from __future__ import annotations

from matcher.checks import MatcherInputError
from matcher.exact import NumbaFlatIP, NumbaHamming
from matcher.faiss_index import FaissIndex, factory_memory_estimate
from matcher.interface import Backend

NAMES_HELP = "numba-flat, numba-hamming, faiss:<index_factory string>"
# exhaustive searches: every record scored, no candidate missed
EXACT_FLOAT = ("numba-flat", "faiss:Flat")
EXACT_BINARY = ("numba-hamming", "faiss:BFlat")
# faiss keeps codes in std::vector, grown by doubling as chunks are added:
# when the last chunks go in, the old buffer and its doubled copy coexist
FAISS_GROWTH = 3.0


def is_binary(name: str) -> bool:
    """True for backends that search packed binary codes (Hamming)."""
    return name == "numba-hamming" or name.startswith("faiss:B")


def is_exact(name: str) -> bool:
    """True for exhaustive backends (float or binary)."""
    return name in EXACT_FLOAT or name in EXACT_BINARY


def is_exact_float(name: str) -> bool:
    """True for exhaustive float backends, the reference for recall@L."""
    return name in EXACT_FLOAT


def backend_key(name: str, params: str = "") -> str:
    """The file-name-safe label of a backend and its search parameters."""
    s = name + (f"_{params}" if params else "")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s)


def make_backend(name: str, d: int, threads: int | None = None, seed: int = 0) -> Backend:
    """An empty backend; d is the vector dimension (float) or code bits (binary)."""
    if name == "numba-flat":
        return NumbaFlatIP(d, threads)
    if name == "numba-hamming":
        return NumbaHamming(d, threads)
    if name.startswith("faiss:") and len(name) > 6:
        return FaissIndex(name[6:], d, threads=threads, seed=seed)
    raise MatcherInputError(f"unknown backend {name!r}; allowed: {NAMES_HELP}")


def final_index_bytes(name: str, n: int, d: int) -> int:
    """Bytes one backend holds once n records of width d are added."""
    if name == "numba-flat":
        return NumbaFlatIP.memory_estimate(n, d)
    if name == "numba-hamming":
        return NumbaHamming.memory_estimate(n, d)
    return factory_memory_estimate(name.removeprefix("faiss:"), n, d)


def peak_index_bytes(name: str, n: int, d: int) -> int:
    """Peak bytes of one backend while a gallery of n records is added."""
    growth = 1.0 if name.startswith("numba-") else FAISS_GROWTH
    return int(growth * final_index_bytes(name, n, d))
