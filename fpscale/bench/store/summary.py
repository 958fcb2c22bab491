"""The typed summary of a run (``summary.json``) and its JSON form.

One dataclass per part: the scenario, the host, every backend's timings,
memory and metrics, the memory plan, where a cluster put the shards, the
national-scale projection and the individuality check. ``to_json_dict`` and
``read_summary`` turn it into JSON and back. A results folder is untrusted
input: ``read_summary`` refuses non-finite numbers, nesting deeper than any
summary has and oversized files, checks every value's type (dacite), and
then what the report relies on (projection keys that are fpscale's finger
sets, non-empty and consistent lists, intervals of two bounds), so that a
damaged or foreign file is refused with one line instead of failing
somewhere in a report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dacite

from fpscale.bench.measure.individuality import Individuality
from fpscale.bench.measure.metrics import MetricsSummary
from fpscale.bench.measure.miss_sources import QUALITY_LEVELS, MissSources
from fpscale.bench.measure.projection import OMIT_IF_NONE, FingerSetProjection
from fpscale.bench.measure.recall import Recall
from fpscale.bench.scenario import PROJECTIONS, Scenario, ScenarioError, nesting, scenario_from_dict
from fpscale.bench.store.files import ResultsError, is_plain_file

SUMMARY = "summary.json"
# The form of summary.json. Raise it (here only) when a field is renamed,
# removed or changes meaning, regenerate docs/summary.schema.json
# (python -m fpscale.bench.store.schema) and teach _migrate to read the old form.
# 1: no schema_version key; 2: schema_version, individuality keys renamed,
# host facts (CPU model, thread pools, git commit, timestamp).
SCHEMA_VERSION = 2
MAX_SUMMARY_BYTES = 256 << 20
MAX_NESTING = 16  # a summary fpscale writes nests 9 levels


@dataclass
class LatencyMs:
    """Single-search latency percentiles, in milliseconds."""

    p50: float
    p90: float
    p99: float
    samples: int


@dataclass
class RescoreTimings:
    """Minutiae re-scoring of one backend's lists: work done and time spent."""

    comparisons: int
    compare_s: float
    wall_s: float | None = field(default=None, metadata=OMIT_IF_NONE)
    candidates: int | None = None
    fusion: str | None = None
    comparisons_per_s: float | None = None


@dataclass
class Refinement:
    """A backend's lists refined before re-scoring (search.refine_candidates):
    lists of ``searched`` re-ranked by the records' float vectors to their
    best ``kept``; pairs scored, the seconds scoring them (regeneration of
    the records included) and the step's wall time; reranked_from, where the
    codes' lists were first re-ranked by asymmetric scores
    (search.rerank_candidates), how long they were."""

    searched: int
    kept: int
    pairs: int
    refine_s: float
    wall_s: float | None = field(default=None, metadata=OMIT_IF_NONE)
    reranked_from: int | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class Timings:
    """Seconds spent per stage and searches per second (None when unmeasured)."""

    train_s: float
    build_s: float
    search_s: float
    throughput_searches_per_s: float | None
    latency_ms: LatencyMs
    rescore: RescoreTimings | None = field(default=None, metadata=OMIT_IF_NONE)
    refine: Refinement | None = field(default=None, metadata=OMIT_IF_NONE)


def untimed() -> Timings:
    """Timings of a row whose searches were not timed on their own (zeros,
    no throughput, no latency samples)."""
    return Timings(0.0, 0.0, 0.0, None, LatencyMs(0.0, 0.0, 0.0, 0))


@dataclass
class Memory:
    """Bytes of one backend's index: planned before the build, held after."""

    estimate_bytes: int
    actual_bytes: int


@dataclass(kw_only=True)
class BackendResult:
    """One row of the results: a backend, or a backend's lists re-scored."""

    name: str
    params: str
    key: str
    binary: bool
    rescored_from: str | None = field(default=None, metadata=OMIT_IF_NONE)
    memory: Memory
    timings: Timings
    metrics: MetricsSummary
    vs_exact: Recall | None = field(default=None, metadata=OMIT_IF_NONE)
    # re-scored rows: each operating point's misses by where they arise
    miss_sources: list[MissSources] | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class ThreadPool:
    """One native thread pool loaded in the process (threadpoolctl's view):
    a BLAS library and the kernel it chose for this CPU, or an OpenMP runtime."""

    user_api: str                 # blas or openmp
    internal_api: str             # openblas, mkl, blis, openmp, ...
    version: str | None
    num_threads: int
    architecture: str | None      # the BLAS kernel (e.g. SkylakeX, Haswell); None for OpenMP
    threading_layer: str | None
    filepath: str


@dataclass
class HostInfo:
    """The machine and library versions a run used, the source tree's git
    commit (None outside a git checkout) and when the summary was made
    (ISO 8601, UTC)."""

    machine: str
    processor: str
    system: str
    python: str
    cpus: int | None
    numba_threads: int
    memory_bytes: int | None
    versions: dict[str, str]
    cpu_model: str = ""
    physical_cores: int | None = None
    thread_pools: list[ThreadPool] = field(default_factory=list)
    git_commit: str | None = None
    timestamp: str = ""


@dataclass
class MemoryPlan:
    """The plan made before the run (bytes) and the peak it reached."""

    indexes: dict[str, int]
    submissions: int
    transient: int
    baseline: int
    total_bytes: int
    peak_rss_bytes: int | None  # the high-water mark when the run finished
    after_search: int = 0  # the working set once the indexes are released (re-scored ladder)


@dataclass
class ClusterInfo:
    """Where a Dask run placed the gallery's shards."""

    scheduler: str
    workers: int
    threads_per_worker: int
    shards: int
    shard_records: list[int]
    placement: dict[str, str]
    work_stealing: bool
    build_wall_s: float
    run: str


@dataclass
class Resumed:
    """A run that was stopped and resumed: what its earlier starts did.
    The summary's wall_s is the last start's alone."""

    starts: int                   # starts whose work the results hold, the last included
    earlier_s: float              # wall seconds of the earlier starts, up to their last checkpoint
    gallery_records_before: int   # gallery records built before the last start


@dataclass
class CandidateFile:
    """One file of candidate lists read by ``fpscale evaluate``."""

    path: str
    sha256: str
    gallery_size: int
    rows: int
    list_length: int  # the longest list (L); shorter lists are padded


@dataclass
class Evaluation:
    """Where the results of ``fpscale evaluate`` came from: candidate lists
    of a matcher fpscale did not run, one file per gallery size, and the
    ground truth. Nothing was simulated or timed."""

    matcher: str
    truth: str
    truth_sha256: str
    searches: int
    mated: int
    files: list[CandidateFile]
    projection_note: str


@dataclass
class VectorInput:
    """One vector file that ``fpscale search`` read: its format (suffix:
    .npy, .fbin, .u8bin, .i8bin), value type and shape (rows, dim)."""

    path: str
    sha256: str
    format: str
    dtype: str
    rows: int
    dim: int


@dataclass
class VectorSearch:
    """Where the results of ``fpscale search`` came from: fpscale's backends
    run on gallery and probe vectors read from files (gallery ids are row
    numbers), scored against a truth file; the training sample is the first
    train_size gallery rows; threads None is each library's default."""

    gallery: VectorInput
    probes: VectorInput
    truth: str
    truth_sha256: str
    searches: int
    mated: int
    candidates: int
    train_size: int
    threads: int | None


@dataclass(kw_only=True)
class Summary:
    """Everything a run measured; ``summary.json`` holds its JSON form."""

    schema_version: int = SCHEMA_VERSION
    scenario: Scenario
    fingerprint: str
    seed: int
    host: HostInfo
    generation_s: float
    backends: list[BackendResult]
    # seconds the gallery pass spent scanning the ladder (all finger sets)
    ladder_s: float = 0.0
    # re-scoring the rungs' lists (projection.rescored)
    ladder_rescore: RescoreTimings | None = field(default=None, metadata=OMIT_IF_NONE)
    memory_plan: MemoryPlan
    cluster: ClusterInfo | None = field(default=None, metadata=OMIT_IF_NONE)
    projection: dict[str, FingerSetProjection] | None = field(default=None, metadata=OMIT_IF_NONE)
    individuality: Individuality | None = field(default=None, metadata=OMIT_IF_NONE)
    evaluation: Evaluation | None = field(default=None, metadata=OMIT_IF_NONE)
    vector_search: VectorSearch | None = field(default=None, metadata=OMIT_IF_NONE)
    wall_s: float = 0.0
    resumed: Resumed | None = field(default=None, metadata=OMIT_IF_NONE)

    def backend(self, key: str) -> BackendResult:
        """The row with this key (KeyError naming the keys there are)."""
        for b in self.backends:
            if b.key == key:
                return b
        raise KeyError(f"no backend {key!r}; the run has {', '.join(b.key for b in self.backends)}")


def to_json_dict(obj: Any) -> Any:
    """Plain JSON values of a dataclass tree, in field order; fields marked
    OMIT_IF_NONE are left out when None. (dataclasses.asdict cannot see
    field metadata, so this walk is written here.)"""
    if isinstance(obj, Scenario):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None and f.metadata.get("omit_if_none"):
                continue
            out[f.name] = to_json_dict(v)
        return out
    if isinstance(obj, dict):
        return {str(k): to_json_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_dict(v) for v in obj]
    return obj


def _scenario(d: Any) -> Scenario:
    if isinstance(d, Scenario):
        return d
    try:
        return scenario_from_dict(d, d.get("name", "scenario") if isinstance(d, dict) else "scenario")
    except ScenarioError as e:
        raise ResultsError(f"its scenario is not valid: {e}") from None


def _migrate(d: dict) -> dict:
    """The current form of a summary written by an earlier fpscale."""
    version = d.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"schema_version {version} is newer than this fpscale reads "
                           f"({SCHEMA_VERSION}): read it with a newer fpscale")
    d = dict(d)
    if version == 1 and isinstance(d.get("individuality"), dict):
        renamed = {"M": "cells", "l": "direction_agreement", "m": "minutiae_probe",
                   "n": "minutiae_gallery"}
        d["individuality"] = {renamed.get(k, k): v for k, v in d["individuality"].items()}
    d["schema_version"] = SCHEMA_VERSION
    return d


def summary_from_dict(d: Any) -> Summary:
    """A Summary from parsed JSON (an earlier schema version is read too);
    ResultsError naming the first bad value."""
    if not isinstance(d, dict):
        raise ResultsError(f"a summary is a JSON object, not {type(d).__name__}")
    if nesting(d, MAX_NESTING) > MAX_NESTING:
        raise ResultsError(f"not an fpscale summary: nested more than {MAX_NESTING} deep")
    d = _migrate(d)
    config = dacite.Config(type_hooks={Scenario: _scenario, float: _number}, strict=True)
    try:
        s = dacite.from_dict(Summary, d, config=config)
    except (dacite.DaciteError, ValueError, TypeError, AttributeError, KeyError) as e:
        # dacite's own errors, and what it raises on a table where a list
        # belongs (it builds the list from the table's items)
        msg = str(e)
        raise ResultsError(f"not an fpscale summary: {msg if len(msg) < 200 else msg[:197] + '...'}") \
            from None
    bad = _problem(s)
    if bad:
        raise ResultsError(f"not an fpscale summary: {bad}")
    return s


def _finite(*xs) -> bool:
    return all(x is None or (not isinstance(x, bool) and math.isfinite(x)) for x in xs)


def _rate_problem(r, what: str) -> str | None:
    if r is None:
        return None
    if len(r.ci95) != 2 or r.count < 0 or r.of < 0 or r.count > r.of:
        return f"{what} is not a rate with a two-sided interval"
    return None


def _projection_problem(fs: str, p: FingerSetProjection) -> str | None:
    where = f"projection.{fs}"
    if fs not in PROJECTIONS or p.finger_set != fs:
        return (f"projection key {fs[:40]!r} is not one of fpscale's projections "
                f"({', '.join(PROJECTIONS)})")
    r = p.rungs
    if not r or len(r) > 1000 or any(x < 1 for x in r) or any(a >= b for a, b in zip(r, r[1:])):
        return f"{where}.rungs are not increasing gallery sizes"
    if p.searches < 0 or p.target_gallery_size < 1 or p.pooled_tail.pairs < 0:
        return f"{where} holds negative counts or sizes"
    figures = [p.under_one_per_year] + ([p.shift_b] if p.shift_b else [])
    for h in p.held_out + p.selection:
        figures += [c.predicted for c in h.checks]
        if len(h.measured.ci95) != 2:
            return f"{where}.held_out holds intervals without two bounds"
    ch = p.choice
    if ch is not None and (not 0 <= ch.inside <= ch.of or any(len(x) not in (0, 2) for x in
                                                            (ch.chosen_on, ch.validated_on))):
        return f"{where}.choice is not a count of checks on two rungs"
    for a in p.at_target:
        if len(a.measured) != len(r) or any(len(m.ci95) != 2 for m in a.measured):
            return f"{where}.at_target does not measure every rung"
        figures += [a.fpir, a.fp_searches, a.persons_low, a.persons_high, a.mated_wrong_top,
                    a.mated_listed_nonmate, a.stale_record_matches]
        c = a.curve
        if c is not None and (len(c.n) > 1000 or not len(c.n) == len(c.fpir) == len(c.lo) == len(c.hi)):
            return f"{where}.at_target curve lists differ in length"
    if any(len(f.ci95) != 2 for f in figures):
        return f"{where} holds figures without a two-sided interval"
    return None


def _miss_sources_problem(ms: MissSources, key: str) -> str | None:
    parts = (ms.not_listed_above, ms.not_listed_below, ms.listed_missed)
    by_q = (ms.mated_by_quality, ms.misses_by_quality)
    if (min(parts) < 0 or sum(parts) != ms.misses or ms.misses > ms.mated
            or any(len(x) != QUALITY_LEVELS or min(x) < 0 for x in by_q)
            or sum(ms.mated_by_quality) != ms.mated or sum(ms.misses_by_quality) != ms.misses
            or any(m > n for m, n in zip(ms.misses_by_quality, ms.mated_by_quality))
            or not 0 <= (ms.unmatchable or 0) <= ms.misses
            or (ms.retrieved is None) != (ms.not_listed_above_retrieved is None)
            or not 0 <= (ms.not_listed_above_retrieved or 0) <= ms.not_listed_above
            or (ms.retrieved is not None and ms.retrieved < 1)
            or (ms.not_listed_above_refinable is not None
                and (ms.retrieved is None or not 0 <= ms.not_listed_above_refinable
                     <= ms.not_listed_above - ms.not_listed_above_retrieved))):
        return f"the miss sources of {key} are not counts that add up"
    return _rate_problem(ms.fnir_all_listed, f"{key} fnir_all_listed")


def _problem(s: Summary) -> str | None:
    """What a summary that passed the type check still gets wrong, or None."""
    if not s.backends or len(s.backends) > 1000:
        return "it lists no backends"
    for b in s.backends:
        if len(b.key) > 300:
            return "a backend key is longer than any fpscale writes"
        m = b.metrics
        det = m.det
        if len(det.fnir) != len(det.threshold) or len(det.fpir) != len(det.threshold):
            return f"the DET of {b.key[:60]} has lists of different lengths"
        for name, r in (("rank1_hit_rate", m.rank1_hit_rate), ("fnir_no_threshold", m.fnir_no_threshold),
                        *((f"operating point {i}", x) for i, op in enumerate(m.operating_points)
                          for x in (op.fnir, op.fpir))):
            bad = _rate_problem(r, f"{b.key[:60]} {name}")
            if bad:
                return bad
        if b.timings.latency_ms.samples < 0 or not _finite(b.timings.search_s):
            return f"the timings of {b.key[:60]} are not valid"
        for ms in b.miss_sources or []:
            bad = _miss_sources_problem(ms, b.key[:60])
            if bad:
                return bad
    for fs, p in (s.projection or {}).items():
        bad = _projection_problem(fs, p)
        if bad:
            return bad
    r = s.resumed
    if r is not None and (r.starts < 2 or not _finite(r.earlier_s) or r.earlier_s < 0
                          or not 0 <= r.gallery_records_before <= s.scenario.population.gallery_size):
        return "its record of earlier starts is not one fpscale writes"
    return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number fpscale writes (it writes null)")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text[:40]} is out of range")
    return v


def _number(v: Any) -> Any:
    # JSON writes 2.0 as 2.0 but a hand-made file may say 2: both are numbers
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 1e300:
        return float(v)
    return v


def read_summary(folder: Path) -> Summary:
    """The summary of a results folder; ResultsError when it is missing or
    not what fpscale writes."""
    path = Path(folder) / SUMMARY
    if not path.is_file():
        raise ResultsError(f"{folder} holds no {SUMMARY}: run a scenario into it first")
    if not is_plain_file(path):
        raise ResultsError(f"{path} is a link; fpscale reads only its own plain files")
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            raise ResultsError(f"{path} is larger than any summary fpscale writes")
        d = json.loads(path.read_bytes(), parse_constant=_no_constant, parse_float=_finite_float)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise ResultsError(f"{path} is not readable JSON ({str(e)[:120]})") from None
    try:
        return summary_from_dict(d)
    except ResultsError as e:
        raise ResultsError(f"{path}: {e}") from None
