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
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from fpscale.bench.measure.ladder import HIST_BINS
from fpscale.bench.measure.rescored_ladder import PIPELINE_SUFFIX
from fpscale.bench.profile import Calibration, ProfileError, calibration_from_dict, resolve_profile
from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.registry import NAMES_HELP, backend_key, is_binary, make_backend
from fpscale.synth.embedding import shipped_basis
from fpscale.synth.population import LEGACY_FINGERS, PopulationSpec, spec_from_dict


class ScenarioError(ValueError):
    """A scenario that cannot be run as written."""


FINGER_SETS = ("one", "two_index", "all")
# what a run projects: each finger set's first stage, and the re-scored
# pipeline of the set the searches use (projection.rescored)
PROJECTIONS = FINGER_SETS + tuple(fs + PIPELINE_SUFFIX for fs in FINGER_SETS)
LADDER_SCORES = ("vectors", "codes")

# Bounds on what a scenario may ask for. Sizes that cost memory are planned
# too (fpscale.bench.run.planner); these keep every value meaningful and finite.
MAX_GALLERY = 10**11          # records simulated (ids stay below the never-enrolled ids)
MAX_SUBMISSIONS = 10**9
MAX_TARGET_GALLERY = 10**11   # a national program: more than ten times the world's population
MAX_SEARCHES_PER_YEAR = 1e12
MAX_CANDIDATES = 10_000       # L
MAX_RERANKED = 100_000        # a streamed search's lists before their re-ranking
MAX_BATCH = 10_000_000        # gallery chunk, probe batch and training sample
MAX_THREADS = 1024
MAX_THRESHOLDS = 10_000       # points of the DET sweep
MAX_BACKENDS = 16
MAX_LADDER = 50
MAX_DIM = 4096
MAX_BITS = 65_536
MAX_WORKERS = 1024
MAX_SHARDS = 100_000
MAX_TEXT = 20_000             # description and source
MAX_DEPTH = 32                # nesting of tables and arrays
MAX_FILE_BYTES = 1 << 20
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_HELP = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


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
    fpscale.matcher.minutiae; "mcc": Minutia Cylinder-Code score, fpscale.matcher.mcc)."""

    candidates: int
    fusion: str  # per-finger scores fused by "sum" or "max"
    matcher: str = "paired"
    # searches whose best booking finger is at quality >= poor_quality (1
    # best .. 5) have their first poor_candidates re-scored instead (0: as
    # the others); every re-scored list keeps its best `candidates`
    poor_candidates: int = 0
    poor_quality: int = 4

    def longest(self, width: int) -> int:
        """The longest part of lists `width` long that is re-scored."""
        return min(max(self.poor_candidates, self.candidates), width)


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
    # the exact Hamming search done in the gallery pass: the code ladder's
    # scan keeps every search's top candidates as it scores each chunk, and
    # no index is held (the searches are known before the gallery is built)
    streamed: bool = False
    # a deeper re-scoring for poor searches, whose mates the candidate
    # vectors rank lower (docs/calibration.md): the vectors' first
    # rescore_poor_candidates (0: none beyond rescore_candidates) when the
    # best booking finger's quality is at least rescore_poor_quality. The
    # vectors retrieve that many for every search; their row keeps its
    # first `candidates`
    rescore_poor_candidates: int = field(default=0, metadata={"omit_if_default": True})
    rescore_poor_quality: int = field(default=4, metadata={"omit_if_default": True})
    # refinement before re-scoring, as faiss's IndexRefine does: the backend
    # retrieves refine_candidates a search, re-ranked by the exact inner
    # product of the records' float vectors (regenerated from the seed), of
    # which the best `retrieved` go to the re-scoring (0: none)
    refine_candidates: int = field(default=0, metadata={"omit_if_default": True})
    # the codes' deeper lists re-ranked before the refinement: a streamed
    # search keeps rerank_candidates a search by Hamming score, each with its
    # asymmetric score (the search's float projection against the record's
    # code bits, fpscale.matcher.asymmetric), and hands the best
    # refine_candidates by that score to the refinement (0: none)
    rerank_candidates: int = field(default=0, metadata={"omit_if_default": True})

    @property
    def rescoring(self) -> Rescoring:
        """What minutiae re-scoring does (whether it runs: ``rescore``)."""
        return Rescoring(self.rescore_candidates, self.rescore_fusion, self.rescore_matcher,
                         self.rescore_poor_candidates, self.rescore_poor_quality)

    @property
    def retrieved(self) -> int:
        """Candidates the vectors retrieve a search: the list reported
        (``candidates``), or the deeper part re-scored for poor searches."""
        return max(self.candidates, self.rescore_poor_candidates if self.rescore else 0)

    @property
    def searched(self) -> int:
        """Candidates the backend's search lists: rerank_candidates when
        the lists are re-ranked, else refine_candidates when they are
        refined, else ``retrieved``."""
        return self.rerank_candidates or self.refine_candidates or self.retrieved


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
    # what the ladder scores: the float vectors (inner product, as numba-flat)
    # or the binary codes (bits minus Hamming distance, as numba-hamming),
    # which at national scale cost a fifth of the time and need no vectors
    scores: str = "vectors"
    # the re-scored pipeline measured at every rung as well: each rung's top
    # rescore_candidates (by the ladder's scores) re-scored by the 1:1
    # matcher, and projected like the first stage
    rescored: bool = False


def pipeline_finger_set(search_fingers: tuple[int, ...], finger_sets: tuple[str, ...]) -> str | None:
    """The first of finger_sets that holds every searched finger (what the
    searches and their re-scoring fuse), or None."""
    for fs in finger_sets:
        if (fs == "all" or (fs == "one" and len(search_fingers) == 1)
                or (fs == "two_index" and sorted(search_fingers) == sorted(LEGACY_FINGERS))):
            return fs
    return None


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
    calibration: Calibration = field(default_factory=Calibration)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # population and search keys added later (marked omit_if_default)
        # are left out at their defaults, so that fingerprints and summaries
        # of scenarios that do not choose them stay as they were
        for part, cls in (("population", PopulationSpec), ("search", SearchSpec)):
            for f in dataclasses.fields(cls):
                if f.metadata.get("omit_if_default") and d[part].get(f.name) == f.default:
                    del d[part][f.name]
        return d

    def fingerprint(self) -> str:
        """A short hash of everything that determines the results (where
        the run executes does not)."""
        d = self.to_dict()
        d.pop("description", None)
        d.pop("cluster", None)
        # the profile's settings are in [population] and [search] already;
        # its record of targets and fits is provenance, not a result's input
        d["calibration"] = d["calibration"]["profile"] or None
        # added later: left out at its default, so that results made before
        # it existed still resume
        if d["projection"]["scores"] == "vectors":
            d["projection"].pop("scores")
        if not d["projection"]["rescored"]:
            d["projection"].pop("rescored")
        if not d["search"]["streamed"]:
            d["search"].pop("streamed")
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _err(where: str, key: str, value, allowed: str) -> ScenarioError:
    shown = repr(value)
    if len(shown) > 100:
        shown = shown[:97] + "..."
    return ScenarioError(f"[{where}] {key} = {shown}: {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    """A finite number (not a bool, not NaN, not infinite)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def safe_name(text: str) -> str:
    """A scenario name made from free text (a file's stem): what NAME
    does not allow becomes '-'."""
    t = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:64].lstrip("._-")
    return t or "scenario"


def _check_keys(where: str, table: dict, cls) -> None:
    if not isinstance(table, dict):
        raise ScenarioError(f"[{where}] must be a table, got {type(table).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for k in table:
        if k not in allowed:
            raise ScenarioError(f"[{where}] unknown key {str(k)[:60]!r}; allowed: {', '.join(allowed)}")


def _pos_int(where, key, v, lo=1, hi=None):
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        raise _err(where, key, v, f"must be an integer >= {lo}" if hi is None
                   else f"must be an integer in [{lo}, {hi:,}]")
    return v


def _text(where, key, v, limit=MAX_TEXT) -> str:
    if not isinstance(v, str) or len(v) > limit or "\0" in v:
        raise _err(where, key, v if not isinstance(v, str) else v[:40] + "...",
                   f"must be a string of at most {limit:,} characters without NUL")
    return v


# faiss index_factory parts that need training points: k-means with
# (IVF) n lists or (PQ, with nbits per code) 2**nbits centroids each
_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")
_PARAM = re.compile(r"\s*(\w+)\s*=\s*(\d+)\s*")


# faiss's k-means asks for this many training points per centroid
# (ClusteringParameters::min_points_per_centroid, faiss/Clustering.h); below
# it, faiss prints a warning from C++, which fpscale turns into one note
FAISS_POINTS_PER_CENTROID = 39


def _centroids(name: str) -> tuple[int, str]:
    """The largest k-means a faiss factory string trains: (centroids, what)."""
    need, what = 0, ""
    for m in _IVF.finditer(name):
        if int(m.group(1)) > need:
            need, what = int(m.group(1)), f"{m.group(1)} inverted lists"
    for m in _PQ.finditer(name):
        nbits = int(m.group(2) or 8)
        if 2**nbits > need:
            need, what = 2**nbits, f"{2**nbits} centroids per PQ sub-quantizer"
    return need, what


def check_training_points(where: str, name: str, train: int) -> None:
    for m in list(_IVF.finditer(name)) + list(_PQ.finditer(name)):
        if not 1 <= int(m.group(1)) <= 1 << 24:
            raise _err(where, "name", name, f"{m.group(0)}: the count must be in [1, {1 << 24:,}]")
    for m in _PQ.finditer(name):
        if int(m.group(2) or 8) > 16:
            raise _err(where, "name", name, "PQ codes of more than 16 bits are not supported")
    need, what = _centroids(name)
    if need > train:
        raise _err(where, "name", name,
                   f"needs at least {need:,} training points ({what}) but trains on "
                   f"{train:,} (min of train_size and population.gallery_size)")


def training_advice(name: str, train: int) -> str | None:
    """A note when a faiss index trains on fewer points than faiss's k-means
    asks for (FAISS_POINTS_PER_CENTROID per centroid), else None."""
    need, what = _centroids(name)
    want = need * FAISS_POINTS_PER_CENTROID
    if not need or train >= want:
        return None
    return (f"{name} trains on {train:,} points for {what}; faiss's k-means asks for at least "
            f"{want:,} ({FAISS_POINTS_PER_CENTROID} per centroid): its centroids, and so its "
            "recall, may be poorer (raise train_size, or population.gallery_size)")


def _backend(i: int, b) -> BackendSpec:
    where = f"search.backends[{i}]"
    if isinstance(b, str):
        b = {"name": b}
    _check_keys(where, b, BackendSpec)
    if "name" not in b or not isinstance(b["name"], str):
        raise ScenarioError(f"[{where}] needs a name: {NAMES_HELP}")
    spec = BackendSpec(b["name"], b.get("params", ""), b.get("train_size", 20_000))
    if len(spec.name) > 100 or not spec.name.isprintable():
        raise _err(where, "name", spec.name[:40], "must be a printable name of at most 100 characters")
    if not isinstance(spec.params, str) or len(spec.params) > 200:
        raise _err(where, "params", spec.params, "must be a string such as \"nprobe=16\"")
    for item in filter(None, spec.params.split(",")):
        m = _PARAM.fullmatch(item)
        if not m or not 1 <= int(m.group(2)) <= 1_000_000:
            raise _err(where, "params", spec.params,
                       "must be name=value pairs with values in [1, 1,000,000], e.g. \"nprobe=16\"")
    _pos_int(where, "train_size", spec.train_size, hi=MAX_BATCH)
    return spec


def _search(t: dict) -> SearchSpec:
    _check_keys("search", t, SearchSpec)
    d = SearchSpec()
    vals = {k: t.get(k, getattr(d, k)) for k in ("candidates", "chunk_size", "probe_batch",
                                                   "rescore_candidates")}
    for k, v in vals.items():
        _pos_int("search", k, v, hi=MAX_CANDIDATES if "candidates" in k else MAX_BATCH)
    threads = t.get("threads", 0)
    _pos_int("search", "threads", threads, lo=0, hi=MAX_THREADS)
    rescore = t.get("rescore", False)
    if not isinstance(rescore, bool):
        raise _err("search", "rescore", rescore, "must be true or false")
    fusion = t.get("rescore_fusion", "sum")
    if fusion not in ("sum", "max"):
        raise _err("search", "rescore_fusion", fusion, "allowed: sum, max")
    matcher = t.get("rescore_matcher", "paired")
    if matcher not in RESCORE_MATCHERS:
        raise _err("search", "rescore_matcher", matcher, "allowed: " + ", ".join(RESCORE_MATCHERS))
    streamed = t.get("streamed", False)
    if not isinstance(streamed, bool):
        raise _err("search", "streamed", streamed, "must be true or false")
    if rescore and vals["rescore_candidates"] > vals["candidates"]:
        raise _err("search", "rescore_candidates", vals["rescore_candidates"],
                   f"must not exceed candidates ({vals['candidates']}): only the list is re-scored")
    poor = t.get("rescore_poor_candidates", d.rescore_poor_candidates)
    _pos_int("search", "rescore_poor_candidates", poor, lo=0, hi=MAX_CANDIDATES)
    if poor and poor < vals["rescore_candidates"]:
        raise _err("search", "rescore_poor_candidates", poor,
                   f"must be 0 or at least rescore_candidates ({vals['rescore_candidates']}): "
                   "a poor search's list keeps its best rescore_candidates")
    poor_q = t.get("rescore_poor_quality", d.rescore_poor_quality)
    _pos_int("search", "rescore_poor_quality", poor_q, lo=1, hi=5)
    refine = t.get("refine_candidates", d.refine_candidates)
    _pos_int("search", "refine_candidates", refine, lo=0, hi=MAX_CANDIDATES)
    # the list handed to the re-scoring, as SearchSpec.retrieved says
    handed = SearchSpec(vals["candidates"], rescore=True, rescore_poor_candidates=poor).retrieved
    if refine and not rescore:
        raise _err("search", "refine_candidates", refine,
                   "needs search.rescore = true: the refined lists are what is re-scored")
    if refine and refine < handed:
        raise _err("search", "refine_candidates", refine,
                   f"must be 0 or at least the list handed to the re-scoring ({handed})")
    rerank = t.get("rerank_candidates", d.rerank_candidates)
    _pos_int("search", "rerank_candidates", rerank, lo=0, hi=MAX_RERANKED)
    if rerank and not refine:
        raise _err("search", "rerank_candidates", rerank,
                   "needs search.refine_candidates: the re-ranked lists are what is refined")
    if rerank and rerank <= refine:
        raise _err("search", "rerank_candidates", rerank,
                   f"must be 0 or more than refine_candidates ({refine})")
    if rerank and not streamed:
        raise _err("search", "rerank_candidates", rerank,
                   "needs search.streamed = true: the scan scores each code as it enters a "
                   "list, since no index keeps the codes")
    raw = t.get("backends", [dataclasses.asdict(b) for b in d.backends])
    if not isinstance(raw, list) or not raw or len(raw) > MAX_BACKENDS:
        raise _err("search", "backends", raw if not isinstance(raw, list) else f"{len(raw)} backends",
                   f"must be a non-empty list of at most {MAX_BACKENDS} backends")
    backends = tuple(_backend(i, b) for i, b in enumerate(raw))
    names = [b.name + "|" + b.params for b in backends]
    if len(set(names)) != len(names):
        raise _err("search", "backends", [b.name for b in backends], "lists the same backend twice")
    return SearchSpec(vals["candidates"], vals["chunk_size"], vals["probe_batch"], threads,
                      backends, rescore, vals["rescore_candidates"], fusion, matcher, streamed,
                      poor, poor_q, refine, rerank)


def _metrics(t: dict, candidates: int) -> MetricsSpec:
    _check_keys("metrics", t, MetricsSpec)
    d = MetricsSpec()
    tf = t.get("target_fpir", list(d.target_fpir))
    if not isinstance(tf, list) or not tf or len(tf) > 20 or \
            not all(_is_num(x) and 0 < x < 1 for x in tf):
        raise _err("metrics", "target_fpir", tf, "must be a list of 1 to 20 rates in (0, 1)")
    rank = _pos_int("metrics", "rank", t.get("rank", d.rank), hi=candidates)
    n = _pos_int("metrics", "thresholds", t.get("thresholds", d.thresholds), lo=10,
                 hi=MAX_THRESHOLDS)
    return MetricsSpec(tuple(float(x) for x in tf), rank, n)


def _projection(t: dict, gallery_size: int) -> ProjectionSpec:
    _check_keys("projection", t, ProjectionSpec)
    ladder = t.get("ladder", [])
    if not isinstance(ladder, list) or not all(_is_int(x) and x >= 1 for x in ladder):
        raise _err("projection", "ladder", ladder, "must be a list of gallery sizes >= 1")
    if ladder and (sorted(set(ladder)) != ladder or not 3 <= len(ladder) <= MAX_LADDER):
        raise _err("projection", "ladder", ladder[:8],
                   f"must hold 3 to {MAX_LADDER} increasing sizes")
    if ladder and ladder[-1] > gallery_size:
        raise _err("projection", "ladder", ladder,
                   f"sizes must not exceed population.gallery_size ({gallery_size})")
    fs = t.get("finger_sets", list(FINGER_SETS))
    if not isinstance(fs, list) or not fs or not all(isinstance(x, str) and x in FINGER_SETS
                                                     for x in fs) or len(set(fs)) != len(fs):
        raise _err("projection", "finger_sets", fs,
                   f"a list of distinct names; allowed: {', '.join(FINGER_SETS)}")
    d = ProjectionSpec()
    study = t.get("study_fpir", list(d.study_fpir))
    if (not isinstance(study, list) or not study or len(study) > 20
            or not all(_is_num(x) and 0 < x < 1 and math.isfinite(x) for x in study)):
        raise _err("projection", "study_fpir", study, "must be a list of 1 to 20 rates in (0, 1)")
    dec = t.get("max_decades", d.max_decades)
    if not _is_num(dec) or not math.isfinite(dec) or not 0 < dec <= 12:
        raise _err("projection", "max_decades", dec, "must be a number in (0, 12]")
    scores = t.get("scores", d.scores)
    if scores not in LADDER_SCORES:
        raise _err("projection", "scores", scores, "allowed: " + ", ".join(LADDER_SCORES))
    rescored = t.get("rescored", d.rescored)
    if not isinstance(rescored, bool):
        raise _err("projection", "rescored", rescored, "must be true or false")
    return ProjectionSpec(tuple(ladder), tuple(fs), tuple(float(x) for x in study), float(dec),
                          scores, rescored)


def _target(t: dict) -> TargetSpec:
    _check_keys("target", t, TargetSpec)
    d = TargetSpec()
    n = _pos_int("target", "gallery_size", t.get("gallery_size", d.gallery_size),
                 hi=MAX_TARGET_GALLERY)
    s = t.get("searches_per_year", d.searches_per_year)
    if not _is_num(s) or not 0 < s <= MAX_SEARCHES_PER_YEAR:
        raise _err("target", "searches_per_year", s,
                   f"must be a positive finite number up to {MAX_SEARCHES_PER_YEAR:g}")
    p = t.get("mated_share", d.mated_share)
    if not _is_num(p) or not math.isfinite(p) or not 0 <= p <= 1:
        raise _err("target", "mated_share", p, "must be a number in [0, 1]")
    texts = {k: _text("target", k, t.get(k, ""))
             for k in ("source", "bookings_source", "stale_record_source")}
    b = t.get("bookings_per_person", d.bookings_per_person)
    if not _is_num(b) or not math.isfinite(b) or not 1 <= b <= 1000:
        raise _err("target", "bookings_per_person", b, "must be a number in [1, 1000]")
    stale = t.get("stale_record_share", d.stale_record_share)
    if not _is_num(stale) or not math.isfinite(stale) or not 0 <= stale <= 1:
        raise _err("target", "stale_record_share", stale, "must be a number in [0, 1]")
    return TargetSpec(n, float(s), float(p), texts["source"], float(b), texts["bookings_source"],
                      float(stale), texts["stale_record_source"])


def _cluster(t: dict) -> ClusterSpec:
    _check_keys("cluster", t, ClusterSpec)
    sched = t.get("scheduler", "")
    if not isinstance(sched, str) or scheduler_problem(sched.strip()):
        raise _err("cluster", "scheduler", sched if not isinstance(sched, str) else sched[:60],
                   'must be "local" or a scheduler address such as "tcp://10.0.0.5:8786"')
    vals = {k: t.get(k, getattr(ClusterSpec(), k)) for k in ("workers", "threads_per_worker", "shards")}
    hi = {"workers": MAX_WORKERS, "threads_per_worker": MAX_THREADS, "shards": MAX_SHARDS}
    for k, v in vals.items():
        _pos_int("cluster", k, v, lo=1 if k == "threads_per_worker" else 0, hi=hi[k])
    return ClusterSpec(sched.strip(), vals["workers"], vals["threads_per_worker"], vals["shards"])


_ADDRESS = re.compile(r"(?:(tcp|tls|inproc|ucx|ws|wss)://)?([A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\])"
                      r"(?::(\d{1,5}))?")


def scheduler_problem(text: str) -> str | None:
    """None for "", "local" or a plausible scheduler address, else what is wrong."""
    if text in ("", "local"):
        return None
    m = _ADDRESS.fullmatch(text) if len(text) <= 300 else None
    if m is None or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        return ('give "local" or a scheduler address such as tcp://10.0.0.5:8786')
    return None


def _lists(o):
    # a Scenario turned back into a dict (dataclasses.asdict) has tuples
    # where TOML has arrays: read both the same way
    if isinstance(o, dict):
        return {k: _lists(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_lists(v) for v in o]
    return o


def nesting(o, limit: int) -> int:
    """Depth of nested dicts and lists in o, counted without recursion and
    given up past limit (returns limit + 1 then)."""
    deepest, stack = 0, [(o, 1)]
    while stack:
        x, d = stack.pop()
        if d > limit:
            return limit + 1
        deepest = max(deepest, d)
        if isinstance(x, dict):
            stack.extend((v, d + 1) for v in x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend((v, d + 1) for v in x)
    return deepest


def _population(t) -> PopulationSpec:
    if not isinstance(t, dict):
        raise ScenarioError("[population] must be a table")
    sf = t.get("search_fingers")
    if isinstance(sf, list) and any(isinstance(x, bool) for x in sf):
        raise _err("population", "search_fingers", sf, "must be distinct finger positions 1..10")
    try:
        pop = spec_from_dict(t)
    except (ValueError, TypeError) as e:
        # synth names fields as population.<key>; scenario files say [population] <key>
        msg = str(e).replace("population: ", "[population] ").replace("population.", "[population] ", 1)
        raise ScenarioError(msg if len(msg) <= 300 else msg[:297] + "...") from None
    max_dim = min(MAX_DIM, shipped_basis()[1].shape[1])  # the LDA basis has this many columns
    for key, hi in (("gallery_size", MAX_GALLERY), ("n_submissions", MAX_SUBMISSIONS),
                    ("dim", max_dim), ("bits", MAX_BITS)):
        _pos_int("population", key, getattr(pop, key), hi=hi)
    return pop


def _check_backends(pop: PopulationSpec, search: SearchSpec) -> None:
    """Every backend built empty and given its search parameters, and its
    training needs held against the training sample: before any work."""
    for i, b in enumerate(search.backends):
        where = f"search.backends[{i}]"
        try:
            idx = make_backend(b.name, pop.record_width(b.binary))
            idx.set_search_params(b.params)
        except MatcherInputError as e:
            raise ScenarioError(f"[search] backend {b.name!r}: {e}") from None
        if b.name.startswith("faiss:"):  # counts in the name, and the points training needs
            check_training_points(where, b.name, min(b.train_size, pop.gallery_size)
                                  if idx.needs_training else 1 << 62)


def scenario_from_dict(d: dict, name: str = "scenario") -> Scenario:
    """Validate a parsed TOML document (or Scenario.to_dict()) into a Scenario."""
    if not isinstance(d, dict):
        raise ScenarioError("a scenario must be a table of tables")
    if nesting(d, MAX_DEPTH) > MAX_DEPTH:
        raise ScenarioError(f"tables or arrays nested more than {MAX_DEPTH} deep")
    d = _lists(d)
    top = {"name", "description", "population", "search", "metrics", "projection", "target",
           "cluster", "calibration"}
    for k in d:
        if k not in top:
            raise ScenarioError(f"unknown top-level key {str(k)[:60]!r}; allowed: {', '.join(sorted(top))}")
    if "population" not in d:
        raise ScenarioError("the scenario needs a [population] table")
    nm = d.get("name", name)
    if not isinstance(nm, str) or not NAME.fullmatch(nm):
        raise ScenarioError(f"name = {str(nm)[:80]!r}: must be {NAME_HELP}")
    desc = _text("scenario", "description", d.get("description", ""))
    try:
        d = resolve_profile(d)
        calibration = calibration_from_dict(d.get("calibration", {}))
    except ProfileError as e:
        raise ScenarioError(str(e)) from None
    pop = _population(d["population"])
    search = _search(d.get("search", {}))
    _check_backends(pop, search)
    proj = _projection(d.get("projection", {}), pop.gallery_size)
    if proj.scores == "codes" and proj.ladder and pop.record_bits >= HIST_BINS:
        raise _err("projection", "scores", proj.scores,
                   f"a code ladder holds codes of fewer than {HIST_BINS} bits; these records have "
                   f"{pop.record_bits} (population.bits x search fingers)")
    if proj.rescored and proj.ladder:
        if not search.rescore:
            raise _err("projection", "rescored", True, "needs search.rescore = true")
        if search.refine_candidates:
            raise _err("projection", "rescored", True,
                       "re-scores each rung's own list, unrefined; set search.refine_candidates "
                       "= 0 or projection.rescored = false")
        if pipeline_finger_set(pop.search_fingers, proj.finger_sets) is None:
            raise _err("projection", "rescored", True,
                       "needs a finger set in projection.finger_sets holding every searched "
                       "finger (\"all\")")
    cluster = _cluster(d.get("cluster", {}))
    if search.streamed:
        check_streamed(pop, search, proj)
    return Scenario(nm, desc, pop, search, _metrics(d.get("metrics", {}), search.candidates),
                    proj, _target(d.get("target", {})), cluster, calibration)


def check_streamed(pop: PopulationSpec, search: SearchSpec, proj: ProjectionSpec) -> None:
    """A streamed search is the code ladder's scan of the whole gallery over
    every searched finger: ScenarioError naming what is missing."""
    why = None
    if [(b.name, b.params) for b in search.backends] != [("numba-hamming", "")]:
        why = 'needs backends = [{ name = "numba-hamming" }] alone: the exact Hamming search is what the scan does'
    elif proj.scores != "codes" or not proj.ladder or proj.ladder[-1] != pop.gallery_size:
        why = (f"needs projection.scores = \"codes\" and a ladder whose largest rung is "
               f"population.gallery_size ({pop.gallery_size}): the scan of that rung is the search")
    elif pipeline_finger_set(pop.search_fingers, proj.finger_sets) is None:
        why = ("needs a finger set in projection.finger_sets holding every searched finger "
               "(\"all\")")
    if why:
        raise _err("search", "streamed", True, why + "; or set search.streamed = false")


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}")


def parse_value(text: str):
    """A value as TOML reads it ("20000" -> 20000, "[2, 7]" -> [2, 7],
    "true" -> True); anything TOML does not read is a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def apply_overrides(d: dict, items: list[str] | tuple[str, ...]) -> dict:
    """A copy of a parsed scenario with each "table.key=value" set (the
    command line's --set); the result is validated like the file."""
    out = json.loads(json.dumps(d, default=str)) if items else d
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key):
            raise ScenarioError(f"--set {item[:80]!r}: give KEY=VALUE with KEY such as "
                                "population.gallery_size or calibration.profile")
        if len(raw) > 10_000:
            raise ScenarioError(f"--set {key}: the value is longer than 10,000 characters")
        *tables, name = key.split(".")
        t = out
        for part in tables:
            t = t.setdefault(part, {})
            if not isinstance(t, dict):
                raise ScenarioError(f"--set {key}: {part} is not a table")
        t[name] = parse_value(raw.strip())
    return out


# The shipped scenarios, found by name (`fpscale run default`).
SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read and validate a scenario file, with "table.key=value" overrides
    applied first; ScenarioError names what is wrong."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        shipped = SCENARIOS_DIR / f"{p}.toml"
        if shipped.exists():
            p = shipped
    if not p.is_file():
        raise ScenarioError(f"scenario file not found: {str(path)[:300]}")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ScenarioError(f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB; "
                                "a scenario is a short TOML file")
        d = tomllib.loads(data.decode())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    except RecursionError:
        raise ScenarioError(f"{p}: tables or arrays nested too deep") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot be read: {e}") from None
    return scenario_from_dict(apply_overrides(d, overrides), safe_name(p.stem))
