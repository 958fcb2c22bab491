"""Scenario files (TOML): what to simulate, how to search, what to project.

A scenario has two sizes: the simulated scale (``[population]``, what runs
here) and the target scale (``[target]``, a national program, what is
projected). Every key is checked: an unknown key, a wrong type or an
out-of-range value gives one ``ScenarioError`` naming the table, the key, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from matcher.checks import MatcherInputError
from matcher.registry import NAMES_HELP, backend_key, is_binary, make_backend
from synth.population import PopulationSpec, spec_from_dict


class ScenarioError(ValueError):
    """A scenario that cannot be run as written."""


FINGER_SETS = ("one", "two_index", "all")


@dataclass(frozen=True)
class BackendSpec:
    """One search backend: "numba-flat", "numba-hamming" or "faiss:<factory>"."""

    name: str
    params: str = ""        # search-time parameters, e.g. "nprobe=16"
    train_size: int = 20_000  # records in the training sample (indexes that train)

    @property
    def binary(self) -> bool:
        """Searches binary codes (Hamming) rather than float vectors."""
        return is_binary(self.name)

    @property
    def key(self) -> str:
        """The label of this backend's results files and summary rows."""
        return backend_key(self.name, self.params)


RESCORE_MATCHERS = ("paired", "mcc")


@dataclass(frozen=True)
class Rescoring:
    """Minutiae re-scoring of the top candidates: how many, fused how, and
    with which 1:1 matcher ("paired": paired-minutiae count,
    matcher.minutiae; "mcc": Minutia Cylinder-Code score, matcher.mcc)."""

    candidates: int
    fusion: str  # per-finger scores fused by "sum" or "max"
    matcher: str = "paired"


@dataclass(frozen=True)
class SearchSpec:
    candidates: int = 20      # L: candidate list length
    chunk_size: int = 10_000  # gallery records generated and indexed at a time
    probe_batch: int = 1_000  # submissions searched at a time
    threads: int = 0          # 0: all cores
    backends: tuple[BackendSpec, ...] = (BackendSpec("numba-flat"), BackendSpec("faiss:Flat"))
    rescore: bool = False     # minutiae re-scoring of the top candidates
    rescore_candidates: int = 10
    rescore_fusion: str = "sum"  # fuse per-finger scores: sum or max
    rescore_matcher: str = "paired"  # 1:1 matcher: paired (count) or mcc (cylinder code)

    @property
    def rescoring(self) -> Rescoring:
        """What minutiae re-scoring does (whether it runs: ``rescore``)."""
        return Rescoring(self.rescore_candidates, self.rescore_fusion, self.rescore_matcher)


@dataclass(frozen=True)
class MetricsSpec:
    target_fpir: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    rank: int = 1             # R in FNIR(N, R, T)
    thresholds: int = 200     # points in the DET threshold sweep


@dataclass(frozen=True)
class ProjectionSpec:
    ladder: tuple[int, ...] = ()  # gallery sizes measured; empty: no projection
    finger_sets: tuple[str, ...] = FINGER_SETS
    # thresholds are set where the largest rung measures these FPIRs
    study_fpir: tuple[float, ...] = (0.1, 0.03, 0.01)
    # how far past the data (decades in N or in FPIR) a figure may go; the
    # held-out check fits on rungs <= largest / 10, so 1 is what is validated
    max_decades: float = 1.0


@dataclass(frozen=True)
class TargetSpec:
    gallery_size: int = 150_000_000
    searches_per_year: float = 2_200_000.0
    mated_share: float = 0.063
    source: str = ""
    # searches a year of a person searched at least once that year (>= 1)
    bookings_per_person: float = 1.0
    bookings_source: str = ""
    # share of correct matches whose record is out of date (e.g. a person
    # since naturalised): program errors that are not biometric
    stale_record_share: float = 0.0
    stale_record_source: str = ""


@dataclass(frozen=True)
class ClusterSpec:
    """Where a run executes. An empty scheduler: in this process, as always.
    "local": a Dask cluster of ``workers`` processes started for the run.
    An address ("tcp://host:8786"): a running Dask scheduler. None of this
    changes a result, so it is left out of the scenario's fingerprint."""

    scheduler: str = ""
    workers: int = 0             # local clusters: worker processes (0: one per core)
    threads_per_worker: int = 1  # local clusters: threads each worker runs tasks on
    shards: int = 0              # gallery shards (0: two per worker)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    population: PopulationSpec
    search: SearchSpec = field(default_factory=SearchSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    projection: ProjectionSpec = field(default_factory=ProjectionSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short hash of everything that determines the results (where
        the run executes does not)."""
        d = self.to_dict()
        d.pop("description", None)
        d.pop("cluster", None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _err(where: str, key: str, value, allowed: str) -> ScenarioError:
    return ScenarioError(f"[{where}] {key} = {value!r}: {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_keys(where: str, table: dict, cls) -> None:
    if not isinstance(table, dict):
        raise ScenarioError(f"[{where}] must be a table, got {type(table).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for k in table:
        if k not in allowed:
            raise ScenarioError(f"[{where}] unknown key {k!r}; allowed: {', '.join(allowed)}")


def _pos_int(where, key, v, lo=1):
    if not _is_int(v) or v < lo:
        raise _err(where, key, v, f"must be an integer >= {lo}")
    return v


def _backend(i: int, b) -> BackendSpec:
    where = f"search.backends[{i}]"
    if isinstance(b, str):
        b = {"name": b}
    _check_keys(where, b, BackendSpec)
    if "name" not in b or not isinstance(b["name"], str):
        raise ScenarioError(f"[{where}] needs a name: {NAMES_HELP}")
    spec = BackendSpec(b["name"], b.get("params", ""), b.get("train_size", 20_000))
    if not isinstance(spec.params, str):
        raise _err(where, "params", spec.params, "must be a string such as \"nprobe=16\"")
    _pos_int(where, "train_size", spec.train_size)
    return spec


def _search(t: dict) -> SearchSpec:
    _check_keys("search", t, SearchSpec)
    d = SearchSpec()
    vals = {k: t.get(k, getattr(d, k)) for k in ("candidates", "chunk_size", "probe_batch",
                                                   "rescore_candidates")}
    for k, v in vals.items():
        _pos_int("search", k, v)
    threads = t.get("threads", 0)
    _pos_int("search", "threads", threads, lo=0)
    rescore = t.get("rescore", False)
    if not isinstance(rescore, bool):
        raise _err("search", "rescore", rescore, "must be true or false")
    fusion = t.get("rescore_fusion", "sum")
    if fusion not in ("sum", "max"):
        raise _err("search", "rescore_fusion", fusion, "allowed: sum, max")
    matcher = t.get("rescore_matcher", "paired")
    if matcher not in RESCORE_MATCHERS:
        raise _err("search", "rescore_matcher", matcher, "allowed: " + ", ".join(RESCORE_MATCHERS))
    raw = t.get("backends", [dataclasses.asdict(b) for b in d.backends])
    if not isinstance(raw, list) or not raw:
        raise _err("search", "backends", raw, "must be a non-empty list of backends")
    backends = tuple(_backend(i, b) for i, b in enumerate(raw))
    names = [b.name + "|" + b.params for b in backends]
    if len(set(names)) != len(names):
        raise _err("search", "backends", [b.name for b in backends], "lists the same backend twice")
    return SearchSpec(vals["candidates"], vals["chunk_size"], vals["probe_batch"], threads,
                      backends, rescore, vals["rescore_candidates"], fusion, matcher)


def _metrics(t: dict) -> MetricsSpec:
    _check_keys("metrics", t, MetricsSpec)
    d = MetricsSpec()
    tf = t.get("target_fpir", list(d.target_fpir))
    if not isinstance(tf, list) or not all(_is_num(x) and 0 < x < 1 for x in tf):
        raise _err("metrics", "target_fpir", tf, "must be a list of rates in (0, 1)")
    rank = _pos_int("metrics", "rank", t.get("rank", d.rank))
    n = _pos_int("metrics", "thresholds", t.get("thresholds", d.thresholds), lo=10)
    return MetricsSpec(tuple(float(x) for x in tf), rank, n)


def _projection(t: dict, gallery_size: int) -> ProjectionSpec:
    _check_keys("projection", t, ProjectionSpec)
    ladder = t.get("ladder", [])
    if not isinstance(ladder, list) or not all(_is_int(x) and x >= 1 for x in ladder):
        raise _err("projection", "ladder", ladder, "must be a list of gallery sizes >= 1")
    if ladder and (sorted(set(ladder)) != ladder or len(ladder) < 3):
        raise _err("projection", "ladder", ladder, "must hold at least 3 increasing sizes")
    if ladder and ladder[-1] > gallery_size:
        raise _err("projection", "ladder", ladder,
                   f"sizes must not exceed population.gallery_size ({gallery_size})")
    fs = t.get("finger_sets", list(FINGER_SETS))
    if not isinstance(fs, list) or not fs or not all(x in FINGER_SETS for x in fs):
        raise _err("projection", "finger_sets", fs, f"allowed: {', '.join(FINGER_SETS)}")
    d = ProjectionSpec()
    study = t.get("study_fpir", list(d.study_fpir))
    if (not isinstance(study, list) or not study
            or not all(_is_num(x) and 0 < x < 1 and math.isfinite(x) for x in study)):
        raise _err("projection", "study_fpir", study, "must be a non-empty list of rates in (0, 1)")
    dec = t.get("max_decades", d.max_decades)
    if not _is_num(dec) or not math.isfinite(dec) or not 0 < dec <= 12:
        raise _err("projection", "max_decades", dec, "must be a number in (0, 12]")
    return ProjectionSpec(tuple(ladder), tuple(fs), tuple(float(x) for x in study), float(dec))


def _target(t: dict) -> TargetSpec:
    _check_keys("target", t, TargetSpec)
    d = TargetSpec()
    n = _pos_int("target", "gallery_size", t.get("gallery_size", d.gallery_size))
    s = t.get("searches_per_year", d.searches_per_year)
    if not _is_num(s) or not math.isfinite(s) or s <= 0:
        raise _err("target", "searches_per_year", s, "must be a positive number")
    p = t.get("mated_share", d.mated_share)
    if not _is_num(p) or not math.isfinite(p) or not 0 <= p <= 1:
        raise _err("target", "mated_share", p, "must be a number in [0, 1]")
    texts = {}
    for k in ("source", "bookings_source", "stale_record_source"):
        texts[k] = t.get(k, "")
        if not isinstance(texts[k], str):
            raise _err("target", k, texts[k], "must be a string")
    b = t.get("bookings_per_person", d.bookings_per_person)
    if not _is_num(b) or not math.isfinite(b) or not 1 <= b <= 1000:
        raise _err("target", "bookings_per_person", b, "must be a number in [1, 1000]")
    stale = t.get("stale_record_share", d.stale_record_share)
    if not _is_num(stale) or not 0 <= stale <= 1:
        raise _err("target", "stale_record_share", stale, "must be a number in [0, 1]")
    return TargetSpec(n, float(s), float(p), texts["source"], float(b), texts["bookings_source"],
                      float(stale), texts["stale_record_source"])


def _cluster(t: dict) -> ClusterSpec:
    _check_keys("cluster", t, ClusterSpec)
    sched = t.get("scheduler", "")
    if not isinstance(sched, str):
        raise _err("cluster", "scheduler", sched,
                   'must be "local" or a scheduler address such as "tcp://10.0.0.5:8786"')
    vals = {k: t.get(k, getattr(ClusterSpec(), k)) for k in ("workers", "threads_per_worker", "shards")}
    for k, v in vals.items():
        _pos_int("cluster", k, v, lo=1 if k == "threads_per_worker" else 0)
    return ClusterSpec(sched.strip(), vals["workers"], vals["threads_per_worker"], vals["shards"])


def _lists(o):
    # a Scenario turned back into a dict (dataclasses.asdict) has tuples
    # where TOML has arrays: read both the same way
    if isinstance(o, dict):
        return {k: _lists(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_lists(v) for v in o]
    return o


def scenario_from_dict(d: dict, name: str = "scenario") -> Scenario:
    """Validate a parsed TOML document (or Scenario.to_dict()) into a Scenario."""
    if not isinstance(d, dict):
        raise ScenarioError("a scenario must be a table of tables")
    d = _lists(d)
    top = {"name", "description", "population", "search", "metrics", "projection", "target",
           "cluster"}
    for k in d:
        if k not in top:
            raise ScenarioError(f"unknown top-level key {k!r}; allowed: {', '.join(sorted(top))}")
    if "population" not in d:
        raise ScenarioError("the scenario needs a [population] table")
    try:
        pop = spec_from_dict(d["population"]) if isinstance(d["population"], dict) else None
    except (ValueError, TypeError) as e:
        # synth names fields as population.<key>; scenario files say [population] <key>
        msg = str(e).replace("population: ", "[population] ").replace("population.", "[population] ", 1)
        raise ScenarioError(msg) from None
    if pop is None:
        raise ScenarioError("[population] must be a table")
    search = _search(d.get("search", {}))
    for b in search.backends:
        try:
            make_backend(b.name, pop.record_width(b.binary))
        except MatcherInputError as e:
            raise ScenarioError(f"[search] backend {b.name!r}: {e}") from None
    nm = d.get("name", name)
    desc = d.get("description", "")
    if not isinstance(nm, str) or not isinstance(desc, str):
        raise ScenarioError("name and description must be strings")
    return Scenario(nm, desc, pop, search, _metrics(d.get("metrics", {})),
                    _projection(d.get("projection", {}), pop.gallery_size),
                    _target(d.get("target", {})), _cluster(d.get("cluster", {})))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError names what is wrong."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        shipped = Path(__file__).resolve().parent.parent / "scenarios" / f"{p}.toml"
        if shipped.exists():
            p = shipped
    if not p.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        with open(p, "rb") as f:
            d = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot be read: {e}") from None
    return scenario_from_dict(d, p.stem)
