"""The experiment runner: scenario -> gallery, submissions, searches, metrics.

Steps, each recorded in the results folder's manifest when finished:
submissions (generated once, ground truth kept in its own array), build
(gallery chunks streamed into every backend, and into the ladder scan),
search (probe batches, timed), metrics, projection, report.
"""

from __future__ import annotations

import contextlib
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
from bench.results import (mark_complete, mark_step, prepare_folder, read_npz, write_json,
                           write_npz)
from bench.scenario import Scenario
from matcher.exact import thread_count
from matcher.interface import Backend, make_backend
from synth.population import (LEGACY_FINGERS, gallery_chunk, gallery_records, chunks,
                              submission_chunk, submission_truth)

LATENCY_SAMPLE = 50  # single searches timed one by one for latency percentiles
# seconds between checkpoints of the gallery pass (0: after every chunk)
CHECKPOINT_S = float(os.environ.get("FPSCALE_CHECKPOINT_S", "30"))
RESCORE_SEGMENT = 500  # searches re-scored between checkpoints


class Checkpoints:
    """Progress of a run, kept in <out>/state and recorded in the manifest.

    State files carry the progress count in their name and the manifest
    names the count to resume from, so a kill between two writes leaves the
    previous consistent set in place; older sets are removed after the
    manifest moves on."""

    def __init__(self, out: Path, manifest: dict) -> None:
        self.out = Path(out)
        self.manifest = manifest
        self.dir = self.out / "state"
        self.last = time.monotonic()

    def get(self, step: str, default=None):
        return self.manifest["steps"].get(step, default)

    def due(self, final: bool = False) -> bool:
        return final or time.monotonic() - self.last >= CHECKPOINT_S

    def save(self, name: str, count: int, arrays: dict) -> None:
        write_npz(self.dir / f"{name}@{count}.npz", **arrays)

    def load(self, name: str, count: int) -> dict:
        return read_npz(self.dir / f"{name}@{count}.npz")

    def commit(self, step: str, info, names: list[str], count: int) -> None:
        mark_step(self.out, self.manifest, step, info)
        self.last = time.monotonic()
        for name in names:  # the sets before this one are no longer needed
            for f in self.dir.glob(f"{name}@*.npz"):
                if f.name != f"{name}@{count}.npz":
                    f.unlink(missing_ok=True)



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
    memory: dict = field(default_factory=dict)


def _threads(sc: Scenario) -> int:
    return sc.search.threads or numba.config.NUMBA_NUM_THREADS


def new_backend(sc: Scenario, b, threads: int) -> Backend:
    """An empty index for one backend spec, sized for the record vectors or codes."""
    spec = sc.population
    d = spec.record_bits if b.binary else spec.record_dim
    return make_backend(b.name, d, threads=threads, seed=spec.seed)


def train_backend(sc: Scenario, b, idx: Backend) -> float:
    """Train idx, if it needs it, on the first train_size gallery records
    (the same sample wherever the run executes); returns seconds."""
    if not idx.needs_training:
        return 0.0
    spec = sc.population
    sample = gallery_chunk(spec, 0, min(b.train_size, spec.gallery_size))
    t0 = time.perf_counter()
    idx.train(sample.codes if b.binary else sample.vectors)
    return time.perf_counter() - t0


def ladder_scans(sc: Scenario, subs: Submissions) -> tuple[dict, dict]:
    """Empty ladder scans per finger set, and each set's record-vector columns."""
    spec = sc.population
    scans, scan_cols = {}, {}
    if not sc.projection.ladder:
        return scans, scan_cols
    for fs in sc.projection.finger_sets:
        cols = finger_set_columns(sc, fs)
        if cols is None:
            continue
        scan_cols[fs] = cols
        mates = subs.mate
        ms = np.full(len(mates), -np.inf, dtype=np.float32)
        has = mates >= 0
        if has.any():
            mv = gallery_records(spec, mates[has]).vectors[:, cols]
            ms[has] = (subs.vectors[has][:, cols] * mv).sum(1)
        span = float(len(cols) // spec.dim) if spec.fusion == "sum" else 1.0
        scans[fs] = ladder_mod.LadderScan(np.array(sc.projection.ladder), subs.vectors[:, cols],
                                          mates, ms, span * 1.001)
    return scans, scan_cols


def index_chunk(sc: Scenario, a: int, b: int, runs: list, scans: dict, scan_cols: dict) -> float:
    """Generate gallery records [a, b), add them to every run's index (adding
    the time to run.build_s) and to the ladder scans; returns the seconds
    spent generating."""
    t0 = time.perf_counter()
    ch = gallery_chunk(sc.population, a, b)
    gen_s = time.perf_counter() - t0
    for run in runs:
        t0 = time.perf_counter()
        run.index.add(ch.ids, ch.codes if run.spec.binary else ch.vectors)
        run.build_s += time.perf_counter() - t0
    for fs, scan in scans.items():
        scan.add(a, ch.vectors[:, scan_cols[fs]])
    return gen_s


def build_backends(sc: Scenario, subs: Submissions, progress: bool = True,
                   ck: Checkpoints | None = None):
    """Stream the gallery once into every backend and into the ladder scans,
    checkpointing every CHECKPOINT_S seconds; resumes from the last
    checkpoint recorded in ck."""
    spec = sc.population
    threads = _threads(sc)
    done = ck.get("build_next", 0) if ck else 0
    timing = ck.get("build_timing", {}) if ck else {}
    runs = []
    for b in sc.search.backends:
        idx = new_backend(sc, b, threads)
        run = BackendRun(b, idx)
        key = slug(b.name, b.params)
        if done:
            idx.set_search_params(b.params)
            idx.import_state(ck.load(f"index_{key}", done))
            run.train_s, run.build_s = timing.get(key, (0.0, 0.0))
        else:
            run.train_s = train_backend(sc, b, idx)
            idx.set_search_params(b.params)
        runs.append(run)

    scans, scan_cols = ladder_scans(sc, subs)
    if done:
        for fs, scan in scans.items():
            scan.import_state(ck.load(f"ladder_{fs}", done))

    bar = tqdm(total=spec.gallery_size, desc="gallery", unit="rec", disable=not progress)
    gen_s = timing.get("generation_s", 0.0)
    all_chunks = list(chunks(spec.gallery_size, sc.search.chunk_size))
    with thread_count(threads):
        for ci, (a, b) in enumerate(all_chunks):
            if ci < done:
                bar.update(b - a)
                continue
            gen_s += index_chunk(sc, a, b, runs, scans, scan_cols)
            bar.update(b - a)
            if ck is not None and ck.due(final=ci + 1 == len(all_chunks)):
                names = []
                for run in runs:
                    key = slug(run.spec.name, run.spec.params)
                    ck.save(f"index_{key}", ci + 1, run.index.export_state())
                    names.append(f"index_{key}")
                for fs, scan in scans.items():
                    ck.save(f"ladder_{fs}", ci + 1, scan.export_state())
                    names.append(f"ladder_{fs}")
                mark_step(ck.out, ck.manifest, "build_timing", {
                    "generation_s": gen_s,
                    **{slug(r.spec.name, r.spec.params): (r.train_s, r.build_s) for r in runs}})
                ck.commit("build_next", ci + 1, names, ci + 1)
    bar.close()
    return runs, scans, gen_s


def search_backend(sc: Scenario, run: BackendRun, subs: Submissions, progress: bool = True,
                   ck: Checkpoints | None = None):
    """Search all submissions; returns (ids, scores) and fills run.timings.
    With ck, every probe batch is checkpointed and a resumed run goes on
    from the next one."""
    probes = subs.codes if run.spec.binary else subs.vectors
    L = sc.search.candidates
    Q = len(probes)
    key = slug(run.spec.name, run.spec.params)
    ids = np.empty((Q, L), dtype=np.int64)
    scores = np.empty((Q, L), dtype=np.float32)
    start, t_all = 0, 0.0
    if ck is not None and ck.get(f"search_next:{key}"):
        start, t_all = ck.get(f"search_next:{key}")
        part = ck.load(f"search_{key}", start)
        ids[:start], scores[:start] = part["ids"], part["scores"]
    run.index.search(probes[:1], L)  # warm-up: compile or load kernels outside the timing
    bar = tqdm(total=Q, initial=start, desc=f"search {run.index.name}", unit="search",
               disable=not progress)
    for a, b in chunks(Q, sc.search.probe_batch):
        if a < start:
            continue
        t0 = time.perf_counter()
        i, s = run.index.search(probes[a:b], L)
        t_all += time.perf_counter() - t0
        ids[a:b], scores[a:b] = i, s
        bar.update(b - a)
        if ck is not None:
            ck.save(f"search_{key}", b, {"ids": ids[:b], "scores": scores[:b]})
            ck.commit(f"search_next:{key}", [b, t_all], [f"search_{key}"], b)
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
    """recall@L (faiss.contrib's intersection measure) and rank-1 agreement of
    an approximate list against the exact one."""
    from faiss.contrib.evaluation import knn_intersection_measure
    ei, ai = exact[0], approx[0]
    return {"recall_at_L": float(knn_intersection_measure(ai, ei)),
            "rank1_agreement": float(np.mean(ei[:, 0] == ai[:, 0])), "L": int(ei.shape[1])}


def run_scenario(sc: Scenario, out: Path, overwrite: bool = False, progress: bool = True,
                 max_memory: int | None = None) -> dict:
    """Run a scenario end to end into ``out``; returns the summary dict.
    Refuses (PlanError) before any work when it would not fit in memory.
    With sc.cluster.scheduler set, the gallery is built and searched in
    shards on a Dask cluster (``bench.cluster``); the results are the same."""
    from bench.planner import check
    on_cluster = bool(sc.cluster.scheduler)
    mem_plan = check(sc, max_memory, indexes=not on_cluster)
    with contextlib.ExitStack() as stack:
        client = layout = None
        if on_cluster:  # reached and planned before anything is written
            from bench.cluster import open_cluster, plan_cluster
            client = stack.enter_context(open_cluster(sc.cluster, progress))
            layout = plan_cluster(sc, client)
        return _run(sc, Path(out), overwrite, progress, mem_plan, client, layout)


def _run(sc: Scenario, out: Path, overwrite: bool, progress: bool, mem_plan, client,
         layout) -> dict:
    version = fpscale_version()
    manifest = prepare_folder(out, sc.fingerprint(), version, overwrite)
    if manifest.get("complete") and (out / "summary.json").is_file():
        import json
        return json.loads((out / "summary.json").read_text())  # nothing left to do
    t_start = time.perf_counter()
    ck = Checkpoints(out, manifest)
    subs = make_submissions(sc, progress)
    write_npz(out / "truth.npz", mate=subs.mate)
    if client is None:
        runs, scans, gen_s = build_backends(sc, subs, progress, ck)
        cluster_info = None
    else:
        # shards live in the workers' memory: a resumed run rebuilds them
        # from the seed and goes on from the searches checkpointed
        from bench.cluster import build_on_cluster, release
        runs, scans, gen_s, cluster_info = build_on_cluster(sc, subs, client, layout, progress)
    mark_step(out, manifest, "build", True)
    try:
        backends, lists, exact_key = _search_all(sc, out, manifest, runs, subs, progress, ck,
                                                 client)
    finally:
        if client is not None:
            release(client, cluster_info)
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
    if cluster_info is not None:
        summary["cluster"] = cluster_info
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
    for f in ck.dir.glob("*.npz"):  # a complete folder needs no checkpoints
        f.unlink()
    return summary


def _search_all(sc: Scenario, out: Path, manifest: dict, runs: list, subs: Submissions,
                progress: bool, ck: Checkpoints, client=None):
    """Search every backend (and re-score its lists), writing each one's
    per-search table; returns (summary rows, candidate lists by key, the
    key of the exact float backend or None)."""
    backends = []
    lists = {}
    exact_key = None
    for run in runs:
        ids, scores = search_backend(sc, run, subs, progress, ck)
        key = slug(run.spec.name, run.spec.params)
        lists[key] = (ids, scores)
        rank, mscore = metrics.mate_rank(ids, subs.mate, scores)
        write_npz(out / f"searches_{key}.npz", probe=np.arange(len(ids)), mate=subs.mate,
                  mate_rank=rank, mate_score=mscore, cand_ids=ids, cand_scores=scores)
        summary = metrics.summarize(ids, scores, subs.mate, sc.metrics.rank, sc.metrics.target_fpir,
                                    sc.metrics.thresholds)
        if exact_key is None and run.spec.name in ("numba-flat", "faiss:Flat"):
            exact_key = key
        # measured once per index: faiss's nbytes serializes the whole index
        run.memory = {"estimate_bytes": _estimate(run), "actual_bytes": run.index.nbytes()}
        backends.append({"name": run.spec.name, "params": run.spec.params, "key": key,
                         "binary": run.spec.binary, "memory": run.memory,
                         "timings": run.timings, "metrics": summary})
        mark_step(out, manifest, f"search:{key}")
        if sc.search.rescore:
            backends.append(_rescored(sc, out, key, run, ids, subs, progress, ck, client))
            mark_step(out, manifest, f"rescore:{key}")
    return backends, lists, exact_key


def _rescored(sc: Scenario, out: Path, key: str, run: BackendRun, ids: np.ndarray,
              subs: Submissions, progress: bool, ck: Checkpoints | None = None,
              client=None) -> dict:
    """Minutiae re-scoring of one backend's lists, as a row of its own,
    checkpointed every RESCORE_SEGMENT searches; on the cluster's workers
    when a Dask client is given (the same numbers either way)."""
    from bench.rescoring import rescore
    Q = len(ids)
    k = min(sc.search.rescore_candidates, ids.shape[1])
    ri = np.empty((Q, k), dtype=np.int64)
    rs = np.empty((Q, k), dtype=np.float32)
    start, info = 0, {"comparisons": 0, "compare_s": 0.0}
    if ck is not None and ck.get(f"rescore_next:{key}"):
        start, info = ck.get(f"rescore_next:{key}")
        part = ck.load(f"rescore_{key}", start)
        ri[:start], rs[:start] = part["ids"], part["scores"]
    segments = [(a, b) for a, b in chunks(Q, RESCORE_SEGMENT) if a >= start]
    fusion = sc.search.rescore_fusion
    if client is None:
        results = (rescore(sc.population, ids[a:b], k, fusion, progress, offset=a)
                   for a, b in segments)
    else:  # segments are independent: the workers re-score them side by side
        from bench.cluster import rescore_on_cluster
        results = rescore_on_cluster(client, sc.population, ids, k, fusion, segments, progress)
    t0 = time.perf_counter()
    for (a, b), (i, sc_, seg) in zip(segments, results):
        ri[a:b], rs[a:b] = i, sc_
        info = {"comparisons": info["comparisons"] + seg["comparisons"],
                "compare_s": info["compare_s"] + seg["compare_s"],
                "wall_s": info.get("wall_s", 0.0) + time.perf_counter() - t0}
        t0 = time.perf_counter()
        if ck is not None:
            ck.save(f"rescore_{key}", b, {"ids": ri[:b], "scores": rs[:b]})
            ck.commit(f"rescore_next:{key}", [b, info], [f"rescore_{key}"], b)
    info.update({"candidates": k, "fusion": sc.search.rescore_fusion,
                 "comparisons_per_s": (info["comparisons"] / info["compare_s"]
                                       if info["compare_s"] > 0 else None)})
    rkey = f"{key}+minutiae"
    rank, mscore = metrics.mate_rank(ri, subs.mate, rs)
    write_npz(out / f"searches_{rkey}.npz", probe=np.arange(len(ri)), mate=subs.mate,
              mate_rank=rank, mate_score=mscore, cand_ids=ri, cand_scores=rs)
    m = metrics.summarize(ri, rs, subs.mate, sc.metrics.rank, sc.metrics.target_fpir,
                          sc.metrics.thresholds)
    t = dict(run.timings)
    t["rescore"] = info
    # in this process: the time spent comparing; on a cluster, where the
    # workers compare side by side, the wall-clock time of the stage
    total = t["search_s"] + (info["compare_s"] if client is None else info["wall_s"])
    t["throughput_searches_per_s"] = len(ri) / total if total > 0 else None
    return {"name": run.spec.name + "+minutiae", "params": run.spec.params, "key": rkey,
            "binary": run.spec.binary, "rescored_from": key,
            "memory": run.memory,
            "timings": t, "metrics": m}


def _estimate(run: BackendRun) -> int:
    from bench.planner import final_index_bytes
    return final_index_bytes(run.spec.name, run.index.ntotal, run.index.d)
