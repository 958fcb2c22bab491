"""Backend names and every fact about them, in one place.

A backend name is "numba-flat", "numba-hamming" or "faiss:<index_factory
string>" (binary factories start with "B", e.g. "faiss:BFlat"); after these,
"plugin[:spec]" names a backend that an installed package offers through the
``fpscale.backends`` entry points (``fpscale.matcher.plugins``). This module says
what a name is (binary or float, exact or approximate), the label its
results files carry, how many bytes its index holds, and builds it.
"""

from __future__ import annotations

from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.exact import NumbaFlatIP, NumbaHamming
from fpscale.matcher.faiss_index import FaissIndex, factory_memory_estimate
from fpscale.matcher.interface import Backend
from fpscale.matcher.plugins import build_plugin, declared_binary, load_factory, plugin_names

NAMES_HELP = ("numba-flat, numba-hamming, faiss:<index_factory string>, "
              "or an installed plugin's name[:spec]")
# exhaustive searches: every record scored, no candidate missed
EXACT_FLOAT = ("numba-flat", "faiss:Flat")
EXACT_BINARY = ("numba-hamming", "faiss:BFlat")
# faiss keeps codes in std::vector, grown by doubling as chunks are added:
# when the last chunks go in, the old buffer and its doubled copy coexist
FAISS_GROWTH = 3.0


def is_builtin(name: str) -> bool:
    """True for the names fpscale's own backends answer to."""
    return name in ("numba-flat", "numba-hamming") or (name.startswith("faiss:") and len(name) > 6)


def is_binary(name: str) -> bool:
    """True for backends that search packed binary codes (Hamming); a
    plugin's factory declares it (``binary = True``)."""
    if is_builtin(name):
        return name == "numba-hamming" or name.startswith("faiss:B")
    factory = load_factory(name.partition(":")[0]) if name else None
    return factory is not None and declared_binary(factory)


def is_exact(name: str) -> bool:
    """True for exhaustive backends (float or binary)."""
    return name in EXACT_FLOAT or name in EXACT_BINARY


def is_exact_float(name: str) -> bool:
    """True for exhaustive float backends, the reference for recall@L."""
    return name in EXACT_FLOAT


def appends_checkpoints(name: str) -> bool:
    """True for backends whose checkpoints append the records added since the
    last one (``Backend.export_rows``) instead of rewriting the whole index."""
    cls = {"numba-flat": NumbaFlatIP, "numba-hamming": NumbaHamming}.get(name)
    return cls is not None and cls.appendable


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
    factory = load_factory(name.partition(":")[0]) if name else None
    if factory is not None:
        return build_plugin(name, factory, d, threads, seed)
    plugins = plugin_names()
    raise MatcherInputError(f"unknown backend {name!r}; allowed: {NAMES_HELP}"
                            + (f" (installed plugins: {', '.join(plugins)})" if plugins else
                               " (no plugin is installed)"))


def final_index_bytes(name: str, n: int, d: int) -> int:
    """Bytes one backend holds once n records of width d are added."""
    if name == "numba-flat":
        return NumbaFlatIP.memory_estimate(n, d)
    if name == "numba-hamming":
        return NumbaHamming.memory_estimate(n, d)
    if not is_builtin(name):
        return make_backend(name, d).plugin_memory_estimate(n, d)
    return factory_memory_estimate(name.removeprefix("faiss:"), n, d)


def peak_index_bytes(name: str, n: int, d: int) -> int:
    """Peak bytes of one backend while a gallery of n records is added."""
    # a plugin's own estimate is taken as its peak: fpscale cannot know how it grows
    growth = FAISS_GROWTH if name.startswith("faiss:") else 1.0
    return int(growth * final_index_bytes(name, n, d))
