"""Galleries beyond one machine: sharded generation and search on Dask.

How a run is spread (``fpscale run --scheduler ADDRESS`` or a ``[cluster]``
table):

- The gallery's chunks, the same [a, b) id ranges a single-process run
  uses, are dealt out to S shards as contiguous runs of chunks, and the
  shards are placed on workers by ``bench.planner.plan_shards`` before
  anything is built.
- One build task per shard runs on its worker: it generates the shard's
  records from (seed, id range), so no gallery data crosses the network,
  adds them to every backend, accumulates the ladder statistics of its
  records, and keeps the indexes in the worker process (``_SHARDS``). It
  returns a small token: timings, sizes and the ladder accumulators.
- Indexes that train (IVF, PQ) are trained once, on the client, on the
  sample a single-process run uses, and every shard starts from that
  trained, empty index: all shards share one coarse quantizer, so a sharded
  IVF search probes the same lists as one index would.
- Each probe batch goes out with one search task per shard. A search task
  depends on its shard's token, so Dask runs it where the shard lives; it
  returns the shard's top L and the client merges the lists with
  ``matcher.topk.merge_lists``, the exact merge of ``ShardedIndex``.
- A worker that dies takes its tokens with it. Dask recomputes a lost
  token (a build task is a pure function of the scenario and the shard)
  on a live worker, and the searches that need it follow; a search that
  still lands on a worker without its shard rebuilds the shard there. The
  rebuilt shard is the same bytes, so the run completes with the same
  results.

Results equal a single-process run's byte for byte for fpscale's exact
kernels, faiss binary and IVF indexes (same scores, exact merge), on
machines that run the same versions of fpscale and its pinned libraries.
faiss's Flat index scores through BLAS in blocks whose float32 sums round
differently with the size of the index and the thread count, so a sharded
faiss Flat can differ in the last bit of a score (about 1e-7). Graph
indexes (HNSW) are not equal: a graph built per shard is a different graph.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid

import numpy as np
from tqdm import tqdm

from bench.planner import PlanError, plan_shards
from bench.runner import (BackendRun, Scenario, Submissions, _threads, index_chunk,
                          ladder_scans, make_submissions, new_backend, slug, train_backend)
from bench.scenario import ClusterSpec, scenario_from_dict
from matcher.exact import thread_count
from matcher.interface import Backend
from matcher.topk import merge_lists
from synth.population import chunks

CONNECT_TIMEOUT_S = 20  # seconds to reach a scheduler before giving up


class ClusterError(RuntimeError):
    """The cluster could not finish a task (workers lost again and again)."""


def _gather(client, futures: list, what: str) -> list:
    # Dask retries a task whose worker died (distributed.scheduler.allowed-failures
    # times); past that, say what failed instead of showing Dask's traceback
    from distributed import KilledWorker
    try:
        return client.gather(futures)
    except KilledWorker as e:
        raise ClusterError(
            f"{what}: the workers running it died again and again ({e}); the usual cause is "
            "memory: give workers more memory or use more shards ([cluster] shards)") from None

# -- on the workers ---------------------------------------------------------

# (run id, shard) -> the shard's indexes, one per backend of the scenario
_SHARDS: dict[tuple[str, int], list[Backend]] = {}
_SUBMISSIONS: dict[str, Submissions] = {}
_LOCK = threading.Lock()
_BUILDING: dict[tuple[str, int], threading.Lock] = {}


def _run_submissions(run: str, sc: Scenario) -> Submissions:
    # the ladder scans need every search's vector and mate: made here from
    # the seed, once per run and worker, rather than sent
    with _LOCK:
        if run not in _SUBMISSIONS:
            _SUBMISSIONS[run] = make_submissions(sc, progress=False)
        return _SUBMISSIONS[run]


def _shard_lock(key: tuple[str, int]) -> threading.Lock:
    # two threads of one worker never build the same shard at once
    with _LOCK:
        return _BUILDING.setdefault(key, threading.Lock())


def _build(job: dict, ladder: bool) -> tuple[list[Backend], dict]:
    """Generate and index one shard, and scan its part of the ladder when
    asked; returns (indexes, stats)."""
    sc = scenario_from_dict(job["scenario"])
    runs = []
    for b in sc.search.backends:
        idx = new_backend(sc, b, job["threads"])
        trained = job["trained"].get(slug(b.name, b.params))
        if trained is not None:
            idx.import_state(trained)
        idx.set_search_params(b.params)
        runs.append(BackendRun(b, idx))
    scans, cols = (ladder_scans(sc, _run_submissions(job["run"], sc))
                   if ladder and job["ladder"] else ({}, {}))
    gen_s = 0.0
    with thread_count(job["threads"]):
        for a, b in job["chunks"]:
            gen_s += index_chunk(sc, a, b, runs, scans, cols)
    indexes = [r.index for r in runs]
    stats = {"shard": job["shard"], "records": sum(b - a for a, b in job["chunks"]),
             "generation_s": gen_s, "build_s": [r.build_s for r in runs],
             "nbytes": [idx.nbytes() for idx in indexes],
             "ladder": {fs: scan.export_state() for fs, scan in scans.items()},
             "pid": os.getpid()}
    return indexes, stats


def _shard(job: dict) -> list[Backend]:
    """This worker's indexes of a shard, built now (without the ladder scan,
    which the token already holds) if it has none."""
    key = (job["run"], job["shard"])
    with _shard_lock(key):
        if key not in _SHARDS:
            _SHARDS[key] = _build(job, ladder=False)[0]
        return _SHARDS[key]


def build_shard(job: dict) -> dict:
    """Task: build one shard on this worker and keep it; returns the token
    (the job, for a rebuild, and the shard's statistics)."""
    key = (job["run"], job["shard"])
    with _shard_lock(key):
        _SHARDS[key], stats = _build(job, ladder=True)
    return {"job": job, "stats": stats}


def search_shard(token: dict, backend: int, probes: np.ndarray, k: int) -> tuple:
    """Task: one shard's top k for a batch of probes, (ids, scores)."""
    job = token["job"]
    idx = _shard(job)[backend]
    with thread_count(job["threads"]):
        return idx.search(probes, k)


def rescore_task(spec, ids: np.ndarray, k: int, fusion: str, offset: int) -> tuple:
    """Task: minutiae re-scoring of one segment of candidate lists, with
    this worker's threads (``bench.rescoring.rescore``)."""
    from distributed import get_worker

    from bench.rescoring import rescore
    with thread_count(get_worker().state.nthreads):
        return rescore(spec, ids, k, fusion, False, offset)


def forget_run(run: str) -> int:
    """Drop a run's shards from this worker; returns how many were held."""
    with _LOCK:
        keys = [k for k in _SHARDS if k[0] == run]
        for k in keys:
            del _SHARDS[k]
            _BUILDING.pop(k, None)
        _SUBMISSIONS.pop(run, None)
    return len(keys)


# -- on the client ----------------------------------------------------------

class ClusterIndex(Backend):
    """One backend's shards on the cluster, searched as one index."""

    def __init__(self, client, tokens: list, backend: int, name: str, binary: bool,
                 d: int, ntotal: int, nbytes: int) -> None:
        self.binary = binary
        super().__init__(d)
        self.name = f"cluster({name})"
        self.client = client
        self.tokens = tokens
        self.backend = backend
        self.ntotal = ntotal
        self._nbytes = nbytes

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # prefer the worker holding each shard; after a loss, wherever Dask
        # has rebuilt it (a loose restriction falls back to the token's place)
        held = self.client.who_has(self.tokens)
        futures = [self.client.submit(search_shard, tok, self.backend, probes, k,
                                      workers=list(held.get(tok.key, ())) or None,
                                      allow_other_workers=True, pure=False)
                   for tok in self.tokens]
        return merge_lists(_gather(self.client, futures, f"searching {self.name}"), k)

    def nbytes(self) -> int:
        return self._nbytes


def rescore_on_cluster(client, spec, ids: np.ndarray, k: int, fusion: str,
                       segments: list[tuple[int, int]], progress: bool = True):
    """Re-score segments [a, b) of the candidate lists ids (Q, L) on the
    workers, all at once; yields each segment's (ids, scores, info) in
    order, so that the caller can checkpoint a growing prefix."""
    futures = [client.submit(rescore_task, spec, ids[a:b], k, fusion, a, pure=False)
               for a, b in segments]
    bar = tqdm(total=sum(b - a for a, b in segments), desc="minutiae re-scoring (cluster)",
               unit="search", disable=not progress)
    try:
        for (a, b), fut in zip(segments, futures):
            yield _gather(client, [fut], f"re-scoring searches {a}-{b}")[0]
            bar.update(b - a)
    finally:
        bar.close()
        client.cancel(futures)  # what an interruption left running


def shard_ranges(sc: Scenario, n_shards: int) -> list[list[tuple[int, int]]]:
    """The gallery's chunks dealt to at most n_shards contiguous shards
    (fewer when there are fewer chunks), as evenly as whole chunks allow."""
    all_chunks = list(chunks(sc.population.gallery_size, sc.search.chunk_size))
    s = max(1, min(n_shards, len(all_chunks)))
    bounds = np.linspace(0, len(all_chunks), s + 1).round().astype(int)
    return [all_chunks[bounds[i]:bounds[i + 1]] for i in range(s)]


@contextlib.contextmanager
def open_cluster(spec: ClusterSpec, progress: bool = True):
    """A Dask client: to the scheduler at spec.scheduler, or to a local
    cluster of spec.workers processes started (and stopped) here."""
    import dask
    from distributed import Client, LocalCluster

    if spec.scheduler == "local":
        workers = spec.workers or max(1, (os.cpu_count() or 1) // spec.threads_per_worker)
        # work stealing moves queued searches to idle workers, which would
        # then rebuild shards they do not hold: correct, but slow
        with dask.config.set({"distributed.scheduler.work-stealing": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=spec.threads_per_worker,
                                   processes=True, dashboard_address=None,
                                   silence_logs=40)  # logging.ERROR
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        try:
            client = Client(spec.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as e:
            raise PlanError(f"cannot reach the Dask scheduler at {spec.scheduler!r}: {e}") from None
        with client:
            yield client


def _workers(client) -> dict[str, dict]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {a: {"memory_limit": w.get("memory_limit") or 0, "nthreads": w.get("nthreads", 1)}
            for a, w in info.items()}


def plan_cluster(sc: Scenario, client) -> dict:
    """Shards and their placement on the client's workers, planned against
    each worker's memory limit before anything is built (PlanError when
    they do not fit)."""
    workers = _workers(client)
    ranges = shard_ranges(sc, sc.cluster.shards or 2 * max(len(workers), 1))
    records = [sum(b - a for a, b in r) for r in ranges]
    return {"workers": workers, "ranges": ranges, "records": records,
            "placement": plan_shards(sc, records, workers)}


def build_on_cluster(sc: Scenario, subs: Submissions, client, layout: dict,
                     progress: bool = True):
    """Build and keep the gallery's shards on the cluster, as ``layout``
    (from ``plan_cluster``) places them.

    Returns (runs, scans, generation_s, info) like ``build_backends``: the
    runs' indexes are ClusterIndex objects, the ladder scans hold the merged
    accumulators of every shard, info says where the shards went."""
    from distributed import as_completed

    workers, ranges, records = layout["workers"], layout["ranges"], layout["records"]
    placement = layout["placement"]
    n_workers = len(workers)
    # [search] threads, where set, is what each task uses, as in one process
    threads = sc.search.threads or min(w["nthreads"] for w in workers.values())
    stealing = client.run_on_scheduler(
        lambda dask_scheduler: "stealing" in dask_scheduler.extensions)

    # train once, here, on the sample a single-process run trains on
    client_threads = _threads(sc)
    trained, train_s = {}, {}
    for b in sc.search.backends:
        idx = new_backend(sc, b, client_threads)
        key = slug(b.name, b.params)
        needs = idx.needs_training
        train_s[key] = train_backend(sc, b, idx)
        if needs:
            trained[key] = idx.export_state()

    run = f"{sc.fingerprint()}-{uuid.uuid4().hex[:8]}"
    sc_dict = sc.to_dict()
    tokens = []
    for s, r in enumerate(ranges):
        job = {"run": run, "scenario": sc_dict, "shard": s, "chunks": r, "trained": trained,
               "threads": threads, "ladder": bool(sc.projection.ladder)}
        tokens.append(client.submit(build_shard, job, key=f"fpscale-shard-{s}-{run}",
                                    workers=[placement[s]], allow_other_workers=True))
    t0 = time.perf_counter()
    stats = [None] * len(tokens)
    bar = tqdm(total=sc.population.gallery_size, desc=f"gallery ({len(ranges)} shards, "
               f"{n_workers} workers)", unit="rec", disable=not progress)
    index_of = {t.key: i for i, t in enumerate(tokens)}
    for fut in as_completed(tokens):
        st = _gather(client, [fut], f"building shard {index_of[fut.key]}")[0]["stats"]
        stats[index_of[fut.key]] = st
        bar.update(st["records"])
    bar.close()
    build_wall_s = time.perf_counter() - t0

    runs = []
    for i, b in enumerate(sc.search.backends):
        key = slug(b.name, b.params)
        d = sc.population.record_bits if b.binary else sc.population.record_dim
        idx = ClusterIndex(client, tokens, i, b.name, b.binary, d, sc.population.gallery_size,
                           sum(st["nbytes"][i] for st in stats))
        run_ = BackendRun(b, idx, build_s=sum(st["build_s"][i] for st in stats),
                          train_s=train_s[key])
        runs.append(run_)
    scans, _ = ladder_scans(sc, subs)
    for fs, scan in scans.items():
        scan.import_state(scan.merge_states([st["ladder"][fs] for st in stats]))
    info = {"scheduler": sc.cluster.scheduler, "workers": n_workers, "threads_per_worker": threads,
            "shards": len(ranges), "shard_records": records,
            "placement": {str(s): placement[s] for s in range(len(ranges))},
            "work_stealing": bool(stealing), "build_wall_s": build_wall_s, "run": run}
    return runs, scans, sum(st["generation_s"] for st in stats), info


def release(client, info: dict) -> None:
    """Free a run's shards on every worker."""
    with contextlib.suppress(Exception):
        client.run(forget_run, info["run"])


__all__ = ["ClusterError", "ClusterIndex", "PlanError", "build_on_cluster", "open_cluster",
           "plan_cluster", "release", "shard_ranges"]
