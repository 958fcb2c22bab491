"""``fpscale search``: fpscale's backends on gallery and probe vectors read
from files, measured and reported as a run's backends are.

Gallery row r is the record with id r; probe row q is the search with id q.
The truth file is the one ``fpscale evaluate`` reads (``probe_id, mate_id``,
empty mate for a non-mated search), with probe rows and gallery rows as ids.
Each backend is built from the gallery in blocks (trained first, where it
needs it, on the first ``train_size`` rows), timed, and searched with every
probe; its lists go through the same per-search tables, metrics, summary
and report as ``fpscale evaluate`` writes, with build time, throughput,
latency and memory as a run records them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpscale.bench.measure import metrics
from fpscale.bench.measure.recall import recall_against
from fpscale.bench.run.host import fpscale_version, host_info
from fpscale.bench.run.planner import BASELINE, PlanError, available_memory
from fpscale.bench.run.progress import stage
from fpscale.bench.scenario import (MAX_BACKENDS, MAX_CANDIDATES, MAX_THREADS, Scenario, check_training_points,
                            scenario_from_dict)
from fpscale.bench.store.manifest import open_for_run
from fpscale.bench.store.summary import (BackendResult, LatencyMs, Memory, MemoryPlan, Summary, Timings,
                                 VectorInput, VectorSearch)
from fpscale.bench.tools.evaluate import _sha256, read_truth
from fpscale.bench.tools.evaluation import finish_results, write_lists
from fpscale.bench.tools.vector_files import (SCAN_ROWS, VectorFile, VectorFileError, as_backend_input,
                                      check_pair, read_vectors, record_width)
from fpscale.matcher.interface import Backend
from fpscale.matcher.registry import backend_key, final_index_bytes, is_binary, is_exact_float, make_backend, \
    peak_index_bytes

PROBE_BATCH = 4096
LATENCY_SAMPLE = 50  # single searches timed one by one, as a run times them
MAX_TRAIN = 10_000_000


@dataclass(frozen=True)
class SearchOptions:
    """What ``fpscale search`` was asked: the files, the backends (names as
    ``make_backend`` takes them), L, the results folder, the training sample
    size, threads (None: each library's default) and whether to replace
    other results in the folder."""

    gallery: Path
    probes: Path
    truth: Path
    backends: tuple[str, ...]
    candidates: int
    out: Path
    train_size: int = 20_000
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Planned:
    """One backend as it will be built: name, binary or float, and d (the
    dimension, or the code length in bits)."""

    name: str
    binary: bool
    d: int


def _row_number(path: Path, what: str, text: str, n: int) -> int:
    if not text.isdigit() or not text.isascii():
        raise VectorFileError(f"{path}: {what} {text!r} is not a row number (0, 1, 2, ...)")
    v = int(text)
    if v >= n:
        raise VectorFileError(f"{path}: {what} {v:,} is past the last row ({n - 1:,})")
    return v


def read_row_truth(path: Path, n_probes: int, n_gallery: int) -> np.ndarray:
    """Each probe row's mate (gallery row, -1 for non-mated), shape (n_probes,),
    from a truth file that names every probe row exactly once."""
    probe_ids, mate_ids = read_truth(path)
    mate = np.full(n_probes, -2, dtype=np.int64)
    for p_text, m_text in zip(probe_ids, mate_ids):
        q = _row_number(path, "probe_id", p_text, n_probes)
        if mate[q] != -2:
            raise VectorFileError(f"{path}: probe row {q} is listed twice")
        mate[q] = -1 if m_text is None else _row_number(path, "mate_id", m_text, n_gallery)
    missing = np.flatnonzero(mate == -2)
    if len(missing):
        raise VectorFileError(f"{path}: names {n_probes - len(missing):,} of {n_probes:,} probe rows; "
                              f"row {missing[0]} has no line (give it an empty mate_id if non-mated)")
    return mate


def check_options(opts: SearchOptions, gallery: VectorFile) -> list[Planned]:
    """The command's arguments against the gallery: every backend built empty
    before any work; InputError, MatcherInputError or ScenarioError."""
    if not 1 <= len(opts.backends) <= MAX_BACKENDS:
        raise VectorFileError(f"give 1 to {MAX_BACKENDS} --backend options, got {len(opts.backends)}")
    if not 1 <= opts.candidates <= min(MAX_CANDIDATES, gallery.rows):
        raise VectorFileError(f"--candidates {opts.candidates}: give a list length in "
                              f"[1, {min(MAX_CANDIDATES, gallery.rows):,}] (at most the gallery's rows)")
    if not 1 <= opts.train_size <= MAX_TRAIN:
        raise VectorFileError(f"--train-size {opts.train_size}: give a number of rows in [1, {MAX_TRAIN:,}]")
    if opts.threads is not None and not 1 <= opts.threads <= MAX_THREADS:
        raise VectorFileError(f"--threads {opts.threads}: give a number in [1, {MAX_THREADS}]")
    keys = [backend_key(b) for b in opts.backends]
    if len(set(keys)) != len(keys):
        raise VectorFileError(f"--backend {', '.join(opts.backends)}: two names give the same results "
                              f"files ({', '.join(keys)})")
    planned = []
    for name in opts.backends:
        if not name or len(name) > 200 or not name.isprintable():
            raise VectorFileError(f"--backend {name[:40]!r}: give a printable backend name")
        binary = is_binary(name)
        d = record_width(gallery, binary, name)
        idx = make_backend(name, d, threads=opts.threads)
        if name.startswith("faiss:"):
            check_training_points("--backend", name, min(opts.train_size, gallery.rows)
                                  if idx.needs_training else 1 << 62)
        planned.append(Planned(name, binary, d))
    return planned


def check_memory(planned: list[Planned], n: int, q: int, L: int, train: int) -> None:
    """One index at a time, every backend's lists (n records, q probes, L
    candidates), the training sample or a block of rows converted to
    float32: PlanError when that exceeds available memory."""
    lists = len(planned) * q * L * 16 * 2  # int64 ids and float64 scores, and the tables' copies
    block = max(SCAN_ROWS, PROBE_BATCH, min(train, n)) * max(p.d for p in planned) * 4 * 2
    need = BASELINE + max(peak_index_bytes(p.name, n, p.d) for p in planned) + lists + block
    avail = available_memory()
    if avail is not None and need > avail:
        raise PlanError(f"searching {q:,} probes in {n:,} records needs about {need / 2**30:.2f} GiB "
                        f"but {avail / 2**30:.2f} GiB is available; give fewer backends or probes")


def build(p: Planned, gallery: VectorFile, opts: SearchOptions) -> tuple[Backend, float, float]:
    """The backend built from every gallery row (id = row): (index, train
    seconds, add seconds)."""
    idx = make_backend(p.name, p.d, threads=opts.threads)
    train_s = 0.0
    if idx.needs_training:
        sample = as_backend_input(gallery, p.binary, slice(0, min(opts.train_size, gallery.rows)))
        t0 = time.perf_counter()
        idx.train(sample)
        train_s = time.perf_counter() - t0
    add_s = 0.0
    bar = stage(f"build {p.name}", gallery.rows, "rec", show=opts.progress)
    for a in range(0, gallery.rows, SCAN_ROWS):
        b = min(a + SCAN_ROWS, gallery.rows)
        block = as_backend_input(gallery, p.binary, slice(a, b))  # reading the file is not timed
        t0 = time.perf_counter()
        idx.add(np.arange(a, b, dtype=np.int64), block)
        add_s += time.perf_counter() - t0
        bar.update(b - a)
    bar.close()
    return idx, train_s, add_s


def search(idx: Backend, p: Planned, probes: VectorFile,
           opts: SearchOptions) -> tuple[np.ndarray, np.ndarray, float, LatencyMs]:
    """Every probe's list: (ids (Q, L), scores (Q, L), seconds searching,
    single-search latency percentiles)."""
    Q, L = probes.rows, opts.candidates
    ids = np.empty((Q, L), dtype=np.int64)
    scores = np.empty((Q, L), dtype=np.float32)
    idx.search(as_backend_input(probes, p.binary, slice(0, 1)), L)  # warm-up: compile or load kernels
    t_all = 0.0
    for a in range(0, Q, PROBE_BATCH):
        b = min(a + PROBE_BATCH, Q)
        batch = as_backend_input(probes, p.binary, slice(a, b))
        t0 = time.perf_counter()
        ids[a:b], scores[a:b] = idx.search(batch, L)
        t_all += time.perf_counter() - t0
    lat = []
    for q in range(min(LATENCY_SAMPLE, Q)):
        one = as_backend_input(probes, p.binary, slice(q, q + 1))
        t0 = time.perf_counter()
        idx.search(one, L)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    return ids, scores, t_all, LatencyMs(float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 90)),
                                         float(np.percentile(lat_ms, 99)), len(lat))


def _input(vf: VectorFile) -> VectorInput:
    return VectorInput(str(vf.path), _sha256(vf.path), vf.format, vf.data.dtype.name, vf.rows, vf.dim)


def search_scenario(opts: SearchOptions, vs: VectorSearch) -> Scenario:
    """The scenario the results are filed under: the searches as read, the
    list length, fpscale's default [metrics] and [target]."""
    d = {"name": "search",
         "description": f"fpscale's backends ({', '.join(opts.backends)}) on gallery {vs.gallery.path} "
                        f"and probes {vs.probes.path}, truth {vs.truth}",
         "population": {"gallery_size": vs.gallery.rows, "n_submissions": vs.searches,
                        "mated_share": vs.mated / vs.searches},
         "search": {"candidates": opts.candidates}}
    return scenario_from_dict(d, "search")


def _fingerprint(sc: Scenario, vs: VectorSearch, opts: SearchOptions) -> str:
    h = hashlib.sha256(sc.fingerprint().encode())
    for part in (vs.gallery.sha256, vs.probes.sha256, vs.truth_sha256, *opts.backends,
                 str(opts.train_size), str(opts.threads)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def run_search(opts: SearchOptions) -> Summary:
    """Check every input (nothing written on a mistake), then build and search
    each backend in turn and write the results folder. Returns the summary."""
    t0 = time.perf_counter()
    gallery, probes = read_vectors(opts.gallery), read_vectors(opts.probes)
    check_pair(gallery, probes)
    mate = read_row_truth(opts.truth, probes.rows, gallery.rows)
    planned = check_options(opts, gallery)
    check_memory(planned, gallery.rows, probes.rows, opts.candidates, opts.train_size)
    vs = VectorSearch(_input(gallery), _input(probes), str(opts.truth), _sha256(opts.truth),
                      probes.rows, int((mate >= 0).sum()), opts.candidates, opts.train_size,
                      opts.threads)
    sc = search_scenario(opts, vs)
    fingerprint = _fingerprint(sc, vs, opts)
    with open_for_run(opts.out, fingerprint, fpscale_version(), opts.overwrite) as folder:
        folder.write_npz("truth.npz", mate=mate)
        rows, lists = [], {}
        for p in planned:
            idx, train_s, add_s = build(p, gallery, opts)
            ids, scores, search_s, latency = search(idx, p, probes, opts)
            # measured and stored in float64, as `fpscale evaluate` reads lists: the same
            # lists give the same thresholds either way
            scores = scores.astype(np.float64)
            key = backend_key(p.name)
            lists[key] = (ids, scores)
            write_lists(folder, key, (ids, scores), mate)
            timings = Timings(train_s, add_s, search_s, probes.rows / search_s if search_s > 0 else None,
                              latency)
            memory = Memory(final_index_bytes(p.name, gallery.rows, p.d), idx.nbytes())
            rows.append(BackendResult(name=p.name, params="", key=key, binary=p.binary, memory=memory,
                                      timings=timings, metrics=metrics.summarize(ids, scores, mate,
                                                                                 sc.metrics)))
            del idx  # one index in memory at a time
        exact = next((r.key for r in rows if is_exact_float(r.name)), None)
        for r in rows:
            if exact is not None and not r.binary and r.key != exact:
                r.vs_exact = recall_against(lists[exact], lists[r.key])
        summary = Summary(scenario=sc, fingerprint=fingerprint, seed=0, host=host_info(),
                          generation_s=0.0, backends=rows,
                          memory_plan=MemoryPlan({}, 0, 0, 0, 0, None), vector_search=vs)
        summary.wall_s = time.perf_counter() - t0
        finish_results(folder, summary)
    return summary
