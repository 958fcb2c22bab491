"""The re-scoring step: one backend's candidate lists re-scored in segments,
each checkpointed, wherever the executor runs them."""

from __future__ import annotations

import numpy as np

from fpscale.bench.run.context import RunContext
from fpscale.bench.run.segments import ListStep, segmented_lists
from fpscale.bench.scenario import Rescoring
from fpscale.bench.store.summary import RescoreTimings


def rescore_lists(ctx: RunContext, key: str, ids: np.ndarray,
                  rescoring: Rescoring | None = None) -> tuple[np.ndarray, np.ndarray, RescoreTimings]:
    """Re-scored lists (Q, k) of backend ``key``'s lists ids (Q, L), with
    the work done and the time spent; rescoring: the scenario's unless given."""
    rescoring = rescoring or ctx.scenario.search.rescoring
    k = min(rescoring.candidates, ids.shape[1])

    def work(segments):
        return ctx.executor.rescore(ctx.scenario.population, ids, rescoring, segments)

    what = ListStep(f"rescore:{key}", f"re-score {key} ({rescoring.matcher})",
                    ("comparisons", "compare_s"))
    ri, rs, info = segmented_lists(ctx, what, (len(ids), k), work)
    timings = RescoreTimings(
        info["comparisons"], info["compare_s"], info.get("wall_s"), k, rescoring.fusion,
        info["comparisons"] / info["compare_s"] if info["compare_s"] > 0 else None)
    return ri, rs, timings
