"""Refinement of a backend's lists before re-scoring: each search's list
re-ranked by the exact inner product of the records' float vectors.

As faiss's IndexRefine re-ranks a coarse index's k_factor x k candidates
by exact distances, a search's deeper list (by binary codes' Hamming
scores, or from an approximate float index) is re-ranked by the record
float vectors, regenerated from the seed for the listed records only and
never stored. A pair gets the bits numba-flat gives it
(``gathered_inner_products``), so a list refined from the whole gallery is
numba-flat's list.
"""

from __future__ import annotations

import time

import numpy as np

from fpscale.bench.run.context import RunContext
from fpscale.bench.run.segments import ListStep, segmented_lists
from fpscale.bench.store.summary import Refinement
from fpscale.matcher.exact import gathered_inner_products
from fpscale.synth.population import PopulationSpec, gallery_records

BATCH_PAIRS = 100_000  # (search, candidate) pairs a batch: bounds the records regenerated at once


def refine_segment(spec: PopulationSpec, probes: np.ndarray, ids: np.ndarray,
                   keep: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The best ``keep`` of each list ids (Q, R) (-1 padded) by the inner
    product of the search's record vector probes[q] ((Q, record_dim)
    float32 C-contiguous) with each listed record's: ids (Q, keep) and
    scores (Q, keep) float32, higher first, ties to the lower id (-1 and
    -inf where less is listed); and the pairs scored and seconds taken."""
    Q, R = ids.shape
    keep = min(keep, R)
    out_i = np.full((Q, keep), -1, dtype=np.int64)
    out_s = np.full((Q, keep), -np.inf, dtype=np.float32)
    t0, pairs = time.perf_counter(), 0
    step = max(1, BATCH_PAIRS // max(R, 1))
    for a in range(0, Q, step):
        b = min(Q, a + step)
        cand = ids[a:b]
        q_ix, c_ix = np.nonzero(cand >= 0)
        if not len(q_ix):
            continue
        uniq, rec = np.unique(cand[q_ix, c_ix], return_inverse=True)
        vecs = gallery_records(spec, uniq).vectors
        score = np.full(cand.shape, -np.inf, dtype=np.float32)
        score[q_ix, c_ix] = gathered_inner_products(probes, (a + q_ix).astype(np.int64), vecs,
                                                    rec.astype(np.int64))
        order = np.lexsort((np.where(cand < 0, np.iinfo(np.int64).max, cand), -score), axis=1)
        out_i[a:b] = np.take_along_axis(cand, order[:, :keep], axis=1)
        out_s[a:b] = np.take_along_axis(score, order[:, :keep], axis=1)
        pairs += len(q_ix)
    return out_i, out_s, {"pairs": pairs, "refine_s": time.perf_counter() - t0}


def refine_lists(ctx: RunContext, key: str, probes: np.ndarray,
                 ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, Refinement]:
    """Backend ``key``'s lists ids (Q, search.refine_candidates) refined to
    their best search.retrieved, in checkpointed segments, and what it took;
    probes (Q, record_dim) float32: the searches' record vectors."""
    srch = ctx.scenario.search
    keep = min(srch.retrieved, ids.shape[1])
    pop = ctx.scenario.population

    def work(segments):
        for a, b in segments:
            yield refine_segment(pop, probes[a:b], ids[a:b], keep)

    what = ListStep(f"refine:{key}", f"refine {key}", ("pairs", "refine_s"))
    ri, rs, info = segmented_lists(ctx, what, (len(ids), keep), work)
    return ri, rs, Refinement(ids.shape[1], keep, info["pairs"], info["refine_s"], info.get("wall_s"),
                              srch.rerank_candidates or None)


def refinement_would_list(spec: PopulationSpec, probes: np.ndarray, mate: np.ndarray,
                          last: np.ndarray, who: np.ndarray) -> np.ndarray:
    """(Q,) bool: for the searches who (Q,) bool (mated ones whose mate the
    backend did not retrieve), whether the mate's float score, as the
    refinement scores it, is above last (Q,) float32, the score of the last
    candidate the refined list hands on: had the backend retrieved the mate,
    the refinement would have handed it on. probes (Q, record_dim) float32
    C-contiguous: the searches' record vectors; mate (Q,) gallery ids."""
    out = np.zeros(len(mate), dtype=bool)
    q = np.nonzero(who)[0]
    if len(q):
        uniq, rec = np.unique(mate[q], return_inverse=True)
        vecs = gallery_records(spec, uniq).vectors
        score = gathered_inner_products(probes, q.astype(np.int64), vecs, rec.astype(np.int64))
        out[q] = score > last[q]
    return out
