"""Building the gallery: every backend's index and the ladder scan, chunk by chunk.

The same code builds a whole gallery in this process and one shard of it on
a cluster worker: a ``GalleryBuilder`` takes gallery chunks [a, b), generates
their records from the seed and adds them to every backend's index and to
the ladder scan of every finger set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fpscale.bench.measure.code_ladder import CodeLadderScan, hamming_scores
from fpscale.bench.measure.ladder import LadderScan
from fpscale.bench.run.progress import say, stage
from fpscale.bench.run.submissions import Submissions
from fpscale.bench.scenario import (BackendSpec, ProjectionSpec, SearchSpec, pipeline_finger_set,
                                    training_advice)
from fpscale.matcher.asymmetric import code_projections
from fpscale.matcher.exact import paired_inner_products
from fpscale.matcher.interface import Backend
from fpscale.matcher.registry import make_backend
from fpscale.synth.embedding import projections
from fpscale.synth.population import LEGACY_FINGERS, PopulationSpec, gallery_chunk, gallery_records

GALLERY_STAGE = "build gallery"  # the stage's name wherever the gallery is built


@dataclass
class BackendRun:
    """One backend of the scenario and the index built for it.

    slot is the backend's position in the scenario; index is None where the
    index lives elsewhere (in shards on a cluster's workers) or nowhere (a
    streamed search, which the ladder scan does)."""

    spec: BackendSpec
    slot: int
    index: Backend | None
    train_s: float = 0.0
    build_s: float = 0.0


@dataclass
class Gallery:
    """A built gallery: one run per backend, the ladder scans by finger set,
    and the seconds spent generating records and scanning the ladder."""

    runs: list[BackendRun]
    scans: dict[str, LadderScan]
    generation_s: float
    ladder_s: float = 0.0


def new_backend(pop: PopulationSpec, b: BackendSpec, threads: int) -> Backend:
    """An empty index for one backend spec, sized for the record vectors or codes."""
    return make_backend(b.name, pop.record_width(b.binary), threads=threads, seed=pop.seed)


def train_backend(pop: PopulationSpec, b: BackendSpec, idx: Backend, show: bool = True) -> float:
    """Train idx, if it needs it, on the first train_size gallery records
    (the same sample wherever the run executes), as stage ``train <key>``;
    returns seconds. show: progress and notes on stderr."""
    if not idx.needs_training:
        return 0.0
    n = min(b.train_size, pop.gallery_size)
    advice = training_advice(b.name, n)
    if advice:
        say(f"note: {advice}", show)
    with stage(f"train {b.key}", n, "points", show) as st:
        sample = gallery_chunk(pop, 0, n)
        t0 = time.perf_counter()
        idx.train(sample.codes if b.binary else sample.vectors)
        seconds = time.perf_counter() - t0
        st.update(n)
    return seconds


def finger_set_columns(pop: PopulationSpec, fset: str, codes: bool = False) -> np.ndarray | None:
    """Record-vector columns (codes: record-code bytes) of a finger set, or
    None if the population lacks it."""
    f = list(pop.search_fingers)
    d = pop.bits // 8 if codes else pop.dim
    if fset == "one":
        slots = [0]
    elif fset == "two_index":
        if not all(x in f for x in LEGACY_FINGERS):
            return None
        slots = [f.index(x) for x in LEGACY_FINGERS]
    else:
        slots = list(range(len(f)))
    return np.concatenate([np.arange(s * d, (s + 1) * d) for s in slots])


def rung_list_length(search: SearchSpec) -> int:
    """Candidates a rung's list keeps for re-scoring: as many as the search re-scores."""
    return min(search.rescore_candidates, search.candidates)


@dataclass(frozen=True)
class ScanLists:
    """Lengths of the lists the scan of every searched finger keeps, per
    search: each rung's (rung) and the whole gallery's (whole; 0 where the
    largest rung's list is the search's list)."""

    rung: int = 0
    whole: int = 0
    scored: bool = False  # the whole list carries asymmetric scores, to be re-ranked


def scan_lists(search: SearchSpec, proj: ProjectionSpec) -> ScanLists:
    """What the scan keeps: a streamed search's lists (the largest rung's,
    or one whole-gallery list where they are deeper than a rung's, with
    asymmetric scores where they are re-ranked) and the rung lists written
    with the ladder; the rung lists the re-scored ladder reads; else none."""
    width = rung_list_length(search)
    if search.streamed:
        return ScanLists(width, search.searched if search.searched > width else 0,
                         bool(search.rerank_candidates))
    return ScanLists(width if proj.rescored else 0)


def ladder_scans(pop: PopulationSpec, proj: ProjectionSpec, subs: Submissions,
                 lists: ScanLists = ScanLists()) -> tuple[dict[str, LadderScan], dict[str, np.ndarray]]:
    """Empty ladder scans per finger set, and each set's record columns
    (vector columns, or code bytes when the ladder scores codes); the set
    of every searched finger keeps the lists ``scan_lists`` says."""
    scans, scan_cols = {}, {}
    if not proj.ladder:
        return scans, scan_cols
    piped = pipeline_finger_set(pop.search_fingers, proj.finger_sets) if lists.rung else None
    on_codes = proj.scores == "codes"
    rungs, mates = np.array(proj.ladder), subs.mate
    has = mates >= 0
    mated = gallery_records(pop, mates[has]) if has.any() else None  # once for every finger set
    for fs in proj.finger_sets:
        cols = finger_set_columns(pop, fs, on_codes)
        if cols is None:
            continue
        scan_cols[fs] = cols
        kept = (lists.rung, lists.whole) if fs == piped else (0, 0)
        ms = np.full(len(mates), -np.inf, dtype=np.float32)
        if on_codes:
            probes = subs.codes[:, cols]
            if mated is not None:  # as numba-hamming scores the pair
                ms[has] = hamming_scores(probes[has], mated.codes[:, cols])
            scored = lists.scored and fs == piped
            scans[fs] = CodeLadderScan(rungs, probes, mates, ms, *kept,
                                       projected=search_projections(pop, subs, fs) if scored else None)
            continue
        if mated is not None:  # the bits the search and the ladder give the same pair
            ms[has] = paired_inner_products(np.ascontiguousarray(subs.vectors[has][:, cols]),
                                            np.ascontiguousarray(mated.vectors[:, cols]))
        span = float(len(cols) // pop.dim) if pop.fusion == "sum" else 1.0
        scans[fs] = LadderScan(rungs, subs.vectors[:, cols], mates, ms, span * 1.001, *kept)
    return scans, scan_cols


def search_projections(pop: PopulationSpec, subs: Submissions, fset: str) -> np.ndarray:
    """The searches' code projections (Q, set bits) float32 over a finger
    set's fingers: what their asymmetric scores against the records' codes
    read (``fpscale.matcher.asymmetric``)."""
    cols = finger_set_columns(pop, fset)
    w = projections(pop.dim, pop.bits, pop.code)[2]
    return code_projections(np.ascontiguousarray(subs.vectors[:, cols]), w, len(cols) // pop.dim)


class GalleryBuilder:
    """Adds generated gallery chunks to every run's index and to the ladder scans."""

    def __init__(self, pop: PopulationSpec, runs: list[BackendRun],
                 scans: dict[str, LadderScan], scan_cols: dict[str, np.ndarray]) -> None:
        self.pop = pop
        self.runs = runs
        self.scans = scans
        self.scan_cols = scan_cols
        self.generation_s = 0.0
        self.ladder_s = 0.0
        # float vectors only where an index or a scan reads them
        self.vectors = (any(not r.spec.binary for r in runs)
                        or any(not s.on_codes for s in scans.values()))

    def add_chunk(self, a: int, b: int) -> None:
        """Generate gallery records [a, b) and add them everywhere; the
        seconds spent go to generation_s, each run's build_s and ladder_s."""
        t0 = time.perf_counter()
        ch = gallery_chunk(self.pop, a, b, self.vectors)
        self.generation_s += time.perf_counter() - t0
        for run in self.runs:
            if run.index is None:  # a streamed search: the scan searches the chunk
                continue
            t0 = time.perf_counter()
            run.index.add(ch.ids, ch.codes if run.spec.binary else ch.vectors)
            run.build_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for fs, scan in self.scans.items():
            scan.add(a, (ch.codes if scan.on_codes else ch.vectors)[:, self.scan_cols[fs]])
        self.ladder_s += time.perf_counter() - t0

    def gallery(self) -> Gallery:
        """What has been built so far."""
        return Gallery(self.runs, self.scans, self.generation_s, self.ladder_s)
