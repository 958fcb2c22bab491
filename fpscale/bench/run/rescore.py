"""The re-scoring step: one backend's candidate lists re-scored in segments,
each checkpointed, wherever the executor runs them."""

from __future__ import annotations

import time

import numpy as np

from fpscale.bench.run.context import RunContext
from fpscale.bench.scenario import Rescoring
from fpscale.bench.store.summary import RescoreTimings
from fpscale.synth.population import chunks

SEGMENT = 500  # searches re-scored between checkpoints


def rescore_lists(ctx: RunContext, key: str, ids: np.ndarray,
                  rescoring: Rescoring | None = None) -> tuple[np.ndarray, np.ndarray, RescoreTimings]:
    """Re-scored lists (Q, k) of backend ``key``'s lists ids (Q, L), with
    the work done and the time spent; rescoring: the scenario's unless given."""
    rescoring = rescoring or ctx.scenario.search.rescoring
    ck = ctx.checkpoints
    Q = len(ids)
    k = min(rescoring.candidates, ids.shape[1])
    ri = np.empty((Q, k), dtype=np.int64)
    rs = np.empty((Q, k), dtype=np.float32)
    start, info = 0, {"comparisons": 0, "compare_s": 0.0}
    if ck.get(f"rescore_next:{key}"):
        start, info = ck.get(f"rescore_next:{key}")
        part = ck.load(f"rescore_{key}", start)
        ri[:start], rs[:start] = part["ids"], part["scores"]
    segments = [(a, b) for a, b in chunks(Q, SEGMENT) if a >= start]
    results = ctx.executor.rescore(ctx.scenario.population, ids, rescoring, segments)
    name = f"re-score {key} ({rescoring.matcher})"
    with ctx.stage(name, Q, "searches", initial=start) as st:
        t0 = time.perf_counter()
        for (a, b), (i, s, seg) in zip(segments, results):
            ri[a:b], rs[a:b] = i, s
            info = {"comparisons": info["comparisons"] + seg["comparisons"],
                    "compare_s": info["compare_s"] + seg["compare_s"],
                    "wall_s": info.get("wall_s", 0.0) + time.perf_counter() - t0}
            t0 = time.perf_counter()
            ck.save(f"rescore_{key}", b, {"ids": ri[:b], "scores": rs[:b]})
            ck.commit(f"rescore_next:{key}", [b, info], [f"rescore_{key}"], b)
            st.update(b - a)
    timings = RescoreTimings(
        info["comparisons"], info["compare_s"], info.get("wall_s"), k, rescoring.fusion,
        info["comparisons"] / info["compare_s"] if info["compare_s"] > 0 else None)
    return ri, rs, timings
