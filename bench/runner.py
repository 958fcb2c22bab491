"""The experiment runner: scenario -> gallery, submissions, searches, metrics.

Steps, each recorded in the results folder's manifest when finished:
submissions (generated once, ground truth kept in its own array), build
(gallery chunks streamed into every backend, and into the ladder scan),
search (probe batches, timed), metrics, projection, report.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path

import numba
import numpy as np
from tqdm import tqdm

from bench import ladder as ladder_mod
from bench import metrics
from bench.results import mark_complete, mark_step, prepare_folder, write_json, write_npz
from bench.scenario import Scenario
from matcher.exact import thread_count
from matcher.interface import Backend, make_backend
from synth.population import (LEGACY_FINGERS, gallery_chunk, gallery_records, chunks,
                              submission_chunk, submission_truth)

LATENCY_SAMPLE = 50  # single searches timed one by one for latency percentiles


def fpscale_version() -> str:
    try:
        return pkg_version("fpscale")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"


def slug(name: str, params: str = "") -> str:
    """A file-name-safe label for a backend."""
    s = name + (f"_{params}" if params else "")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s)


@dataclass
class Submissions:
    vectors: np.ndarray   # (Q, record_dim) float32
    codes: np.ndarray     # (Q, record_bits / 8) uint8
    mate: np.ndarray      # (Q,) gallery id or -1: ground truth, never given to a matcher


def make_submissions(sc: Scenario, progress: bool = True) -> Submissions:
    spec = sc.population
    vs, cs = [], []
    bar = tqdm(total=spec.n_submissions, desc="submissions", unit="search", disable=not progress)
    for a, b in chunks(spec.n_submissions, sc.search.chunk_size):
        ch = submission_chunk(spec, a, b)
        vs.append(ch.vectors)
        cs.append(ch.codes)
        bar.update(b - a)
    bar.close()
    _, mate = submission_truth(spec, 0, spec.n_submissions)
    return Submissions(np.vstack(vs), np.vstack(cs), mate)


def finger_set_columns(sc: Scenario, fset: str) -> np.ndarray | None:
    """Record-vector columns of a finger set, or None if the scenario lacks it."""
    f = list(sc.population.search_fingers)
    d = sc.population.dim
    if fset == "one":
        slots = [0]
    elif fset == "two_index":
        if not all(x in f for x in LEGACY_FINGERS):
            return None
        slots = [f.index(x) for x in LEGACY_FINGERS]
    else:
        slots = list(range(len(f)))
    return np.concatenate([np.arange(s * d, (s + 1) * d) for s in slots])


@dataclass
class BackendRun:
    spec: object
    index: Backend
    build_s: float = 0.0
    train_s: float = 0.0
    timings: dict = field(default_factory=dict)


def _threads(sc: Scenario) -> int:
    return sc.search.threads or numba.config.NUMBA_NUM_THREADS


def build_backends(sc: Scenario, subs: Submissions, progress: bool = True):
    """Stream the gallery once into every backend and into the ladder scans."""
    spec = sc.population
    threads = _threads(sc)
    runs = []
    for b in sc.search.backends:
        d = spec.record_bits if b.binary else spec.record_dim
        idx = make_backend(b.name, d, threads=threads, seed=spec.seed)
        run = BackendRun(b, idx)
        if idx.needs_training:
            n = min(b.train_size, spec.gallery_size)
            sample = gallery_chunk(spec, 0, n)
            t0 = time.perf_counter()
            idx.train(sample.codes if b.binary else sample.vectors)
            run.train_s = time.perf_counter() - t0
        idx.set_search_params(b.params)
        runs.append(run)

    scans = {}
    if sc.projection.ladder:
        for fs in sc.projection.finger_sets:
            cols = finger_set_columns(sc, fs)
            if cols is None:
                continue
            mates = subs.mate
            ms = np.full(len(mates), -np.inf, dtype=np.float32)
            has = mates >= 0
            if has.any():
                mv = gallery_records(spec, mates[has]).vectors[:, cols]
                ms[has] = (subs.vectors[has][:, cols] * mv).sum(1)
            span = float(len(cols) // spec.dim) if spec.fusion == "sum" else 1.0
            scans[fs] = ladder_mod.LadderScan(np.array(sc.projection.ladder), subs.vectors[:, cols],
                                              mates, ms, span * 1.001)

    bar = tqdm(total=spec.gallery_size, desc="gallery", unit="rec", disable=not progress)
    gen_s = 0.0
    with thread_count(threads):
        for a, b in chunks(spec.gallery_size, sc.search.chunk_size):
            t0 = time.perf_counter()
            ch = gallery_chunk(spec, a, b)
            gen_s += time.perf_counter() - t0
            for run in runs:
                t0 = time.perf_counter()
                run.index.add(ch.ids, ch.codes if run.spec.binary else ch.vectors)
                run.build_s += time.perf_counter() - t0
            for fs, scan in scans.items():
                scan.add(a, ch.vectors[:, finger_set_columns(sc, fs)])
            bar.update(b - a)
    bar.close()
    return runs, scans, gen_s


def search_backend(sc: Scenario, run: BackendRun, subs: Submissions, progress: bool = True):
    """Search all submissions; returns (ids, scores) and fills run.timings."""
    probes = subs.codes if run.spec.binary else subs.vectors
    L = sc.search.candidates
    Q = len(probes)
    ids = np.empty((Q, L), dtype=np.int64)
    scores = np.empty((Q, L), dtype=np.float32)
    run.index.search(probes[:1], L)  # warm-up: compile or load kernels outside the timing
    bar = tqdm(total=Q, desc=f"search {run.index.name}", unit="search", disable=not progress)
    t_all = 0.0
    for a, b in chunks(Q, sc.search.probe_batch):
        t0 = time.perf_counter()
        i, s = run.index.search(probes[a:b], L)
        t_all += time.perf_counter() - t0
        ids[a:b], scores[a:b] = i, s
        bar.update(b - a)
    bar.close()
    lat = []
    for q in range(min(LATENCY_SAMPLE, Q)):
        t0 = time.perf_counter()
        run.index.search(probes[q:q + 1], L)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    run.timings = {
        "train_s": run.train_s, "build_s": run.build_s, "search_s": t_all,
        "throughput_searches_per_s": Q / t_all if t_all > 0 else None,
        "latency_ms": {"p50": float(np.percentile(lat_ms, 50)), "p90": float(np.percentile(lat_ms, 90)),
                       "p99": float(np.percentile(lat_ms, 99)), "samples": len(lat)},
    }
    return ids, scores


def host_info() -> dict:
    import faiss
    return {
        "machine": platform.machine(), "processor": platform.processor(), "system": platform.system(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "memory_bytes": _total_memory(),
        "versions": {"fpscale": fpscale_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "faiss": faiss.__version__},
    }


def _peak_rss() -> int | None:
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    except (ImportError, OSError):
        return None


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def recall_against(exact: tuple[np.ndarray, np.ndarray], approx: tuple[np.ndarray, np.ndarray]) -> dict:
    """recall@L and rank-1 agreement of an approximate list against the exact one."""
    ei, ai = exact[0], approx[0]
    L = ei.shape[1]
    inter = [len(set(x[x >= 0]) & set(y[y >= 0])) / max((x >= 0).sum(), 1) for x, y in zip(ei, ai)]
    return {"recall_at_L": float(np.mean(inter)), "rank1_agreement": float(np.mean(ei[:, 0] == ai[:, 0])),
            "L": int(L)}


def run_scenario(sc: Scenario, out: Path, overwrite: bool = False, progress: bool = True,
                 max_memory: int | None = None) -> dict:
    """Run a scenario end to end into ``out``; returns the summary dict.
    Refuses (PlanError) before any work when it would not fit in memory."""
    from bench.planner import check
    mem_plan = check(sc, max_memory)
    out = Path(out)
    version = fpscale_version()
    manifest = prepare_folder(out, sc.fingerprint(), version, overwrite)
    t_start = time.perf_counter()
    subs = make_submissions(sc, progress)
    write_npz(out / "truth.npz", mate=subs.mate)
    runs, scans, gen_s = build_backends(sc, subs, progress)
    mark_step(out, manifest, "build")
    backends = []
    lists = {}
    exact_key = None
    for run in runs:
        ids, scores = search_backend(sc, run, subs, progress)
        key = slug(run.spec.name, run.spec.params)
        lists[key] = (ids, scores)
        rank, mscore = metrics.mate_rank(ids, subs.mate, scores)
        write_npz(out / f"searches_{key}.npz", probe=np.arange(len(ids)), mate=subs.mate,
                  mate_rank=rank, mate_score=mscore, cand_ids=ids, cand_scores=scores)
        summary = metrics.summarize(ids, scores, subs.mate, sc.metrics.rank, sc.metrics.target_fpir,
                                    sc.metrics.thresholds)
        if exact_key is None and run.spec.name in ("numba-flat", "faiss:Flat"):
            exact_key = key
        backends.append({"name": run.spec.name, "params": run.spec.params, "key": key,
                         "binary": run.spec.binary, "memory": {
                             "estimate_bytes": _estimate(run), "actual_bytes": run.index.nbytes()},
                         "timings": run.timings, "metrics": summary})
        mark_step(out, manifest, f"search:{key}")
        if sc.search.rescore:
            backends.append(_rescored(sc, out, key, run, ids, subs, progress))
            mark_step(out, manifest, f"rescore:{key}")
    if exact_key is not None:
        for b in backends:
            if not b["binary"] and b["key"] != exact_key and b["key"] in lists:
                b["vs_exact"] = recall_against(lists[exact_key], lists[b["key"]])
    summary = {
        "scenario": sc.to_dict(), "fingerprint": sc.fingerprint(), "seed": sc.population.seed,
        "host": host_info(), "generation_s": gen_s, "backends": backends,
        "memory_plan": {"indexes": mem_plan.indexes, "submissions": mem_plan.submissions,
                        "transient": mem_plan.transient, "baseline": mem_plan.baseline,
                        "total_bytes": mem_plan.total, "peak_rss_bytes": _peak_rss()},
    }
    if scans:
        from bench.projection import project
        ladder_state = {fs: s.state() for fs, s in scans.items()}
        for fs, st in ladder_state.items():
            write_npz(out / f"ladder_{fs}.npz", mate=subs.mate, **st)
        summary["projection"] = project(sc, ladder_state, subs.mate)
        mark_step(out, manifest, "projection")
    if sc.search.rescore:
        from bench.individuality import compare
        pop = sc.population
        summary["individuality"] = compare(pop.seed, 2000, pop.search_fingers[0],
                                           pop.booking_capture, 2)
    summary["wall_s"] = time.perf_counter() - t_start
    write_json(out / "summary.json", summary)
    mark_step(out, manifest, "summary")
    from bench.report import write_report
    write_report(out)  # from the file just written, as `fpscale report` does
    mark_complete(out, manifest)
    return summary


def _rescored(sc: Scenario, out: Path, key: str, run: BackendRun, ids: np.ndarray,
              subs: Submissions, progress: bool) -> dict:
    """Minutiae re-scoring of one backend's lists, as a row of its own."""
    from bench.rescoring import rescore
    ri, rs, info = rescore(sc.population, ids, sc.search.rescore_candidates,
                           sc.search.rescore_fusion, progress)
    rkey = f"{key}+minutiae"
    rank, mscore = metrics.mate_rank(ri, subs.mate, rs)
    write_npz(out / f"searches_{rkey}.npz", probe=np.arange(len(ri)), mate=subs.mate,
              mate_rank=rank, mate_score=mscore, cand_ids=ri, cand_scores=rs)
    m = metrics.summarize(ri, rs, subs.mate, sc.metrics.rank, sc.metrics.target_fpir,
                          sc.metrics.thresholds)
    t = dict(run.timings)
    t["rescore"] = info
    total = t["search_s"] + info["compare_s"]
    t["throughput_searches_per_s"] = len(ri) / total if total > 0 else None
    return {"name": run.spec.name + "+minutiae", "params": run.spec.params, "key": rkey,
            "binary": run.spec.binary, "rescored_from": key,
            "memory": {"estimate_bytes": _estimate(run), "actual_bytes": run.index.nbytes()},
            "timings": t, "metrics": m}


def _estimate(run: BackendRun) -> int:
    from matcher.faiss_index import FaissIndex, factory_memory_estimate
    n = run.index.ntotal
    if isinstance(run.index, FaissIndex):
        return factory_memory_estimate(run.index.factory, n, run.index.d)
    return type(run.index).memory_estimate(n, run.index.d)
