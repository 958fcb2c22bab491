"""The tasks a Dask worker runs for a sharded run, and the shards it keeps.

A build task generates one shard's records from (seed, id range), adds them
to every backend and scans its part of the ladder, and keeps the indexes in
this worker process (a streamed search builds none: the scan returns the
shard's lists with its ladder state); search tasks answer probe batches from
those indexes;
re-scoring tasks re-score segments of candidate lists. docs/cluster.md
explains how a run is spread and how it recovers from lost workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

from fpscale.bench.run.gallery import (BackendRun, GalleryBuilder, ladder_scans, new_backend,
                                      scan_lists)
from fpscale.bench.run.rescore_segment import rescore_segment
from fpscale.bench.run.submissions import Submissions, make_submissions
from fpscale.bench.scenario import Rescoring, scenario_from_dict
from fpscale.matcher.exact import thread_count
from fpscale.matcher.interface import Backend
from fpscale.synth.population import PopulationSpec

# (run id, shard) -> the shard's indexes, one per backend of the scenario
_SHARDS: dict[tuple[str, int], list[Backend]] = {}
_SUBMISSIONS: dict[str, Submissions] = {}
_LOCK = threading.Lock()
_BUILDING: dict[tuple[str, int], threading.Lock] = {}


def _run_submissions(run: str, sc) -> Submissions:
    # the ladder scans need every search's vector and mate: made here from
    # the seed, once per run and worker, rather than sent
    with _LOCK:
        if run not in _SUBMISSIONS:
            _SUBMISSIONS[run] = make_submissions(sc.population, sc.search.chunk_size,
                                                 progress=False)
        return _SUBMISSIONS[run]


def _shard_lock(key: tuple[str, int]) -> threading.Lock:
    # two threads of one worker never build the same shard at once
    with _LOCK:
        return _BUILDING.setdefault(key, threading.Lock())


def _build(job: dict, ladder: bool,
           report: Callable[[int], None] | None = None) -> tuple[list[Backend], dict]:
    """Generate and index one shard, and scan its part of the ladder when
    asked; report(records built so far) after every chunk, if given;
    returns (indexes, stats)."""
    sc = scenario_from_dict(job["scenario"])
    runs = []
    for slot, b in enumerate(sc.search.backends):
        if sc.search.streamed:  # the shard's ladder scan keeps its lists; no index
            runs.append(BackendRun(b, slot, None))
            continue
        idx = new_backend(sc.population, b, job["threads"])
        trained = job["trained"].get(b.key)
        if trained is not None:
            idx.import_state(trained)
        idx.set_search_params(b.params)
        runs.append(BackendRun(b, slot, idx))
    scans, cols = (ladder_scans(sc.population, sc.projection, _run_submissions(job["run"], sc),
                                 scan_lists(sc.search, sc.projection))
                   if ladder and job["ladder"] else ({}, {}))
    builder = GalleryBuilder(sc.population, runs, scans, cols)
    built = 0
    with thread_count(job["threads"]):
        for a, b in job["chunks"]:
            builder.add_chunk(a, b)
            built += b - a
            if report is not None:
                report(built)
    indexes = [r.index for r in runs]
    stats = {"shard": job["shard"], "records": sum(b - a for a, b in job["chunks"]),
             "generation_s": builder.generation_s, "ladder_s": builder.ladder_s,
             "build_s": [r.build_s for r in runs],
             "nbytes": [0 if idx is None else idx.nbytes() for idx in indexes],
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


def _progress_reporter(job: dict) -> Callable[[int], None] | None:
    # records built, sent to the client through Dask's event log at most
    # once per job["progress"][1] seconds (the client reads the topic)
    if not job.get("progress"):
        return None
    from distributed import get_worker
    worker = get_worker()
    topic, every = job["progress"][0], float(job["progress"][1])
    last = [-float("inf")]

    def report(built: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            worker.log_event(topic, {"shard": job["shard"], "records": built})
    return report


def build_shard(job: dict) -> dict:
    """Task: build one shard on this worker and keep it; returns the token
    (the job, for a rebuild, and the shard's statistics)."""
    key = (job["run"], job["shard"])
    with _shard_lock(key):
        _SHARDS[key], stats = _build(job, ladder=True, report=_progress_reporter(job))
    return {"job": job, "stats": stats}


def search_shard(token: dict, slot: int, probes: np.ndarray, k: int) -> tuple:
    """Task: one shard's top k for a batch of probes, (ids, scores), from
    the index of the backend in position slot."""
    job = token["job"]
    idx = _shard(job)[slot]
    with thread_count(job["threads"]):
        return idx.search(probes, k)


def rescore_task(spec: PopulationSpec, ids: np.ndarray, rescoring: Rescoring,
                 offset: int) -> tuple:
    """Task: minutiae re-scoring of one segment of candidate lists, with
    this worker's threads."""
    from distributed import get_worker
    with thread_count(get_worker().state.nthreads):
        return rescore_segment(spec, ids, rescoring, offset)


def forget_run(run: str) -> int:
    """Drop a run's shards from this worker; returns how many were held."""
    with _LOCK:
        keys = [k for k in _SHARDS if k[0] == run]
        for k in keys:
            del _SHARDS[k]
            _BUILDING.pop(k, None)
        _SUBMISSIONS.pop(run, None)
    return len(keys)
