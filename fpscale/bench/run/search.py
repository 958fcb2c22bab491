"""Searching every submission against one backend, batch by batch, timed."""

from __future__ import annotations

import time

import numpy as np

from fpscale.bench.run.context import RunContext
from fpscale.bench.run.gallery import BackendRun
from fpscale.bench.store.summary import LatencyMs, Timings
from fpscale.synth.population import chunks

LATENCY_SAMPLE = 50  # single searches timed one by one for latency percentiles


def search_backend(ctx: RunContext, run: BackendRun,
                   probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, Timings]:
    """Lists (Q, L) of every probe, L = search.searched (the reported list,
    or deeper for refinement or for re-scoring poor searches), and the
    backend's timings.
    Every probe batch is checkpointed; a resumed run goes on from the next one."""
    L = ctx.scenario.search.searched
    ck, ex = ctx.checkpoints, ctx.executor
    Q = len(probes)
    key = run.spec.key
    ids = np.empty((Q, L), dtype=np.int64)
    scores = np.empty((Q, L), dtype=np.float32)
    start, t_all = 0, 0.0
    if ck.get(f"search_next:{key}"):
        start, t_all = ck.get(f"search_next:{key}")
        part = ck.load(f"search_{key}", start)
        ids[:start], scores[:start] = part["ids"], part["scores"]
    ex.search(run, probes[:1], L)  # warm-up: compile or load kernels outside the timing
    # one stage: the probe batches (counted), then the single searches timed for latency
    with ctx.stage(f"search {key}", Q, "searches", initial=start) as st:
        for a, b in chunks(Q, ctx.scenario.search.probe_batch):
            if a < start:
                continue
            t0 = time.perf_counter()
            i, s = ex.search(run, probes[a:b], L)
            t_all += time.perf_counter() - t0
            ids[a:b], scores[a:b] = i, s
            st.update(b - a)
            ck.save(f"search_{key}", b, {"ids": ids[:b], "scores": scores[:b]})
            ck.commit(f"search_next:{key}", [b, t_all], [f"search_{key}"], b)
        lat = []
        for q in range(min(LATENCY_SAMPLE, Q)):
            t0 = time.perf_counter()
            ex.search(run, probes[q:q + 1], L)
            lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    timings = Timings(
        run.train_s, run.build_s, t_all, Q / t_all if t_all > 0 else None,
        LatencyMs(float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 90)),
                  float(np.percentile(lat_ms, 99)), len(lat)))
    return ids, scores, timings
