"""The typed summary of a run (``summary.json``) and its JSON form.

One dataclass per part: the scenario, the host, every backend's timings,
memory and metrics, the memory plan, where a cluster put the shards, the
national-scale projection and the individuality check. ``write_summary`` and
``read_summary`` turn it into JSON and back; ``read_summary`` checks every
value's type (dacite), so a damaged or foreign file is refused with one
line instead of failing somewhere in a report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dacite

from bench.measure.individuality import Individuality
from bench.measure.metrics import MetricsSummary
from bench.measure.projection import OMIT_IF_NONE, FingerSetProjection
from bench.measure.recall import Recall
from bench.scenario import Scenario, ScenarioError, scenario_from_dict
from bench.store.files import ResultsError, write_json

SUMMARY = "summary.json"
# The form of summary.json. Raise it (here only) when a field is renamed,
# removed or changes meaning, regenerate docs/summary.schema.json
# (python -m bench.store.schema) and teach _migrate to read the old form.
# 1: no schema_version key; 2: schema_version, individuality keys renamed,
# host facts (CPU model, thread pools, git commit, timestamp).
SCHEMA_VERSION = 2


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
class Timings:
    """Seconds spent per stage and searches per second (None when unmeasured)."""

    train_s: float
    build_s: float
    search_s: float
    throughput_searches_per_s: float | None
    latency_ms: LatencyMs
    rescore: RescoreTimings | None = field(default=None, metadata=OMIT_IF_NONE)


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
    peak_rss_bytes: int | None


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
    memory_plan: MemoryPlan
    cluster: ClusterInfo | None = field(default=None, metadata=OMIT_IF_NONE)
    projection: dict[str, FingerSetProjection] | None = field(default=None, metadata=OMIT_IF_NONE)
    individuality: Individuality | None = field(default=None, metadata=OMIT_IF_NONE)
    evaluation: Evaluation | None = field(default=None, metadata=OMIT_IF_NONE)
    wall_s: float = 0.0

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


def write_summary(folder: Path, summary: Summary) -> Path:
    """Write summary.json atomically (non-finite numbers as null)."""
    path = Path(folder) / SUMMARY
    write_json(path, to_json_dict(summary))
    return path


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
    d = _migrate(d)
    config = dacite.Config(type_hooks={Scenario: _scenario, float: _number}, strict=True)
    try:
        return dacite.from_dict(Summary, d, config=config)
    except dacite.DaciteError as e:
        raise ResultsError(f"not an fpscale summary: {e}") from None


def _number(v: Any) -> Any:
    # JSON writes 2.0 as 2.0 but a hand-made file may say 2: both are numbers
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def read_summary(folder: Path) -> Summary:
    """The summary of a results folder; ResultsError when it is missing or
    not what fpscale writes."""
    path = Path(folder) / SUMMARY
    if not path.is_file():
        raise ResultsError(f"{folder} holds no {SUMMARY}: run a scenario into it first")
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ResultsError(f"{path} is not readable JSON ({e})") from None
    try:
        return summary_from_dict(d)
    except ResultsError as e:
        raise ResultsError(f"{path}: {e}") from None
