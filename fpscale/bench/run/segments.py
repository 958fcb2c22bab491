"""A step that makes every search's list segment by segment, each segment
checkpointed, so that a killed run goes on from the last one (re-scoring,
refinement)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fpscale.bench.run.context import RunContext
from fpscale.synth.population import chunks

SEGMENT = 500  # searches between checkpoints

Segment = tuple[np.ndarray, np.ndarray, dict]  # ids, scores, what the segment counted


@dataclass(frozen=True)
class ListStep:
    """A segmented step: "<kind>:<key>" (checkpointed as "<kind>_next:<key>"),
    its progress stage's name, and the entries of a segment's counts it sums."""

    step: str
    stage: str
    counted: tuple[str, ...]


def segmented_lists(ctx: RunContext, what: ListStep, shape: tuple[int, int],
                    work: Callable[[list[tuple[int, int]]], Iterator[Segment]]
                    ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Lists ids (Q, k) int64 and scores (Q, k) float32 of shape (Q, k), made
    by work(segments), which yields each segment's lists and counts in order.
    Returns the lists and the sums of the counted entries, with wall_s once
    any segment was made."""
    ck = ctx.checkpoints
    kind, key = what.step.split(":", 1)
    counted = what.counted
    Q, k = shape
    ids = np.empty((Q, k), dtype=np.int64)
    scores = np.empty((Q, k), dtype=np.float32)
    start, info = 0, dict.fromkeys(counted, 0)
    if ck.get(f"{kind}_next:{key}"):
        start, info = ck.get(f"{kind}_next:{key}")
        part = ck.load(f"{kind}_{key}", start)
        ids[:start], scores[:start] = part["ids"], part["scores"]
    segments = [(a, b) for a, b in chunks(Q, SEGMENT) if a >= start]
    with ctx.stage(what.stage, Q, "searches", initial=start) as st:
        t0 = time.perf_counter()
        for (a, b), (i, s, seg) in zip(segments, work(segments)):
            ids[a:b], scores[a:b] = i, s
            info = {**{c: info[c] + seg[c] for c in counted},
                    "wall_s": info.get("wall_s", 0.0) + time.perf_counter() - t0}
            t0 = time.perf_counter()
            ck.save(f"{kind}_{key}", b, {"ids": ids[:b], "scores": scores[:b]})
            ck.commit(f"{kind}_next:{key}", [b, info], [f"{kind}_{key}"], b)
            st.update(b - a)
    return ids, scores, info
