"""Search backends from other packages: the ``fpscale.backends`` entry points.

A package offers a backend by naming a factory in its metadata::

    [project.entry-points."fpscale.backends"]
    brute = "mypkg.brute:make"

The backend name ``brute:SPEC`` (or plain ``brute``) then builds
``make(SPEC, d, threads, seed)``, with SPEC the text after the first colon
("" without one), d the vector dimension (bits for a binary backend),
threads None or a positive count, seed an int. The factory returns an object
with the methods and attributes of ``fpscale.matcher.interface.Backend`` (subclass it
to get its argument checks): ``binary``, ``needs_training``, ``train``,
``add``, ``search``, ``set_search_params`` and ``nbytes``. A factory of a
binary (Hamming) backend says so before it is called, with ``binary = True``
on itself (a Backend subclass used as the factory has it already), so that
callers know to hand it packed codes and d in bits.

fpscale wraps what the factory returns in ``PluginBackend``: arguments are
checked before they reach the plugin, its lists are checked before fpscale
uses them, and anything the plugin raises becomes one ``MatcherInputError``
line naming the plugin.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.interface import Backend

GROUP = "fpscale.backends"
REQUIRED = ("binary", "needs_training", "train", "add", "search", "set_search_params", "nbytes")


def split_name(name: str) -> tuple[str, str]:
    """("plugin", "spec") of "plugin:spec"; spec is "" without a colon."""
    plugin, _, spec = name.partition(":")
    return plugin, spec


def _entry_point(plugin: str) -> metadata.EntryPoint | None:
    found = [ep for ep in metadata.entry_points(group=GROUP) if ep.name == plugin]
    if len({ep.value for ep in found}) > 1:
        raise MatcherInputError(f"backend plugin {plugin!r} is offered by several packages "
                                f"({', '.join(sorted({ep.value for ep in found}))}); uninstall all but one")
    return found[0] if found else None


def plugin_names() -> list[str]:
    """Names of the installed backend plugins, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=GROUP)})


def load_factory(plugin: str):
    """The factory an installed plugin names, or None when no package offers
    one by that name; MatcherInputError when it cannot be loaded."""
    ep = _entry_point(plugin)
    if ep is None:
        return None
    try:
        factory = ep.load()
    except Exception as e:  # noqa: BLE001 - a plugin's import may fail in any way; name it
        raise MatcherInputError(f"backend plugin {plugin!r} ({ep.value}) cannot be loaded: "
                                f"{type(e).__name__}: {e}") from None
    if not callable(factory):
        raise MatcherInputError(f"backend plugin {plugin!r} ({ep.value}) names a "
                                f"{type(factory).__name__}, not a factory to call")
    return factory


def declared_binary(factory) -> bool:
    """Whether a factory says it builds binary (Hamming) backends."""
    return getattr(factory, "binary", False) is True


def build_plugin(name: str, factory, d: int, threads: int | None = None,
                 seed: int = 0) -> PluginBackend:
    """The plugin's backend for name ("plugin[:spec]"), wrapped and checked."""
    plugin, spec = split_name(name)
    try:
        inner = factory(spec, d, threads, seed)
    except MatcherInputError as e:
        raise MatcherInputError(f"backend plugin {plugin!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - third-party code: one line naming it
        raise MatcherInputError(f"backend plugin {plugin!r} failed to build {name!r}: "
                                f"{type(e).__name__}: {e}") from None
    missing = [a for a in REQUIRED if not hasattr(inner, a)]
    if missing:
        raise MatcherInputError(f"backend plugin {plugin!r} returned a {type(inner).__name__}, "
                                f"not a backend (it lacks {', '.join(missing)})")
    if not isinstance(inner.binary, (bool, np.bool_)):
        raise MatcherInputError(f"backend plugin {plugin!r}: binary must be True or False, "
                                f"got {inner.binary!r}")
    if bool(inner.binary) != declared_binary(factory):
        raise MatcherInputError(f"backend plugin {plugin!r} built a {'binary' if inner.binary else 'float'} "
                                f"backend but its factory declares binary = {declared_binary(factory)}")
    return PluginBackend(name, inner, d, threads)


class PluginBackend(Backend):
    """A plugin's backend behind fpscale's checks."""

    def __init__(self, name: str, inner, d: int, threads: int | None = None) -> None:
        self.binary = bool(inner.binary)
        super().__init__(d, threads)
        self.name = name
        self.plugin = split_name(name)[0]
        self.inner = inner

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except MatcherInputError as e:
            raise MatcherInputError(f"backend plugin {self.plugin!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - third-party code: one line naming it
            raise MatcherInputError(f"backend plugin {self.plugin!r} failed in {what}: "
                                    f"{type(e).__name__}: {e}") from None

    @property
    def needs_training(self) -> bool:
        return bool(self._call("needs_training", lambda: self.inner.needs_training))

    def train(self, sample) -> None:
        sample = self._check_data("training sample", sample)
        self._call("train", self.inner.train, sample)

    def set_search_params(self, params: str) -> None:
        self._call("set_search_params", self.inner.set_search_params, params)

    def nbytes(self) -> int:
        n = self._call("nbytes", self.inner.nbytes)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise MatcherInputError(f"backend plugin {self.plugin!r}: nbytes() gave {n!r}, "
                                    "not a byte count")
        return int(n)

    def plugin_memory_estimate(self, n: int, d: int) -> int:
        """The plugin's own estimate when it has one (memory_estimate(n, d)),
        else the raw records: d float32 values or d bits, and an 8-byte id each."""
        est = getattr(self.inner, "memory_estimate", None)
        if est is not None:
            v = self._call("memory_estimate", est, n, d)
            if not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 0:
                return int(v)
            raise MatcherInputError(f"backend plugin {self.plugin!r}: memory_estimate gave {v!r}, "
                                    "not a byte count")
        return int(n) * ((d // 8 if self.binary else 4 * d) + 8)

    def export_state(self) -> dict[str, np.ndarray]:
        if not hasattr(self.inner, "export_state"):
            raise MatcherInputError(f"backend plugin {self.plugin!r} cannot export its state")
        return self._call("export_state", self.inner.export_state)

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        if not hasattr(self.inner, "import_state"):
            raise MatcherInputError(f"backend plugin {self.plugin!r} cannot import a state")
        self._call("import_state", self.inner.import_state, state)
        self.ntotal = int(getattr(self.inner, "ntotal", self.ntotal))

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:
        self._call("add", self.inner.add, ids, data)

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out = self._call("search", self.inner.search, probes, k)
        return check_lists(self.plugin, out, probes.shape[0], k)


def check_lists(plugin: str, out, q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A plugin's (ids, scores) as fpscale's lists: (q, k) int64 ids (-1
    padding) and float32 scores, best first, -inf where padded."""
    if not isinstance(out, tuple) or len(out) != 2:
        raise MatcherInputError(f"backend plugin {plugin!r}: search must return (ids, scores), "
                                f"got {type(out).__name__}")
    ids, scores = (np.asarray(a) for a in out)
    if ids.shape != (q, k) or scores.shape != (q, k):
        raise MatcherInputError(f"backend plugin {plugin!r}: search returned ids {ids.shape} and scores "
                                f"{scores.shape} for {q} probes and L = {k}; expected ({q}, {k}) each")
    if not np.issubdtype(ids.dtype, np.integer) or not np.issubdtype(scores.dtype, np.floating):
        raise MatcherInputError(f"backend plugin {plugin!r}: search returned ids of {ids.dtype} and "
                                f"scores of {scores.dtype}; expected integers and floats")
    ids = ids.astype(np.int64)
    scores = scores.astype(np.float32)
    if (ids < -1).any():
        raise MatcherInputError(f"backend plugin {plugin!r}: search returned id {int(ids.min())} "
                                "(ids are >= 0, -1 marks padding)")
    scores[ids < 0] = -np.inf
    if np.isnan(scores).any() or (scores[ids >= 0] == np.inf).any():
        raise MatcherInputError(f"backend plugin {plugin!r}: search returned a score that is NaN "
                                "or infinite")
    if (np.diff(scores, axis=1) > 0).any():
        raise MatcherInputError(f"backend plugin {plugin!r}: search returned lists that are not "
                                "best first (scores rise with rank)")
    return ids, scores
