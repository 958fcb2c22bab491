"""Second stage: minutiae re-scoring of a vector search's top candidates.

As an identification system does after candidate retrieval, every
(search, candidate, finger) triple is compared 1:1 at the minutiae level
(``fpscale.matcher.minutiae``), the per-finger paired counts are fused across fingers
(sum, or max), and the candidates are re-ranked by the fused count (ties to
the lower id). Templates are regenerated from the seed, never stored: a
gallery of any size costs nothing until its candidates are re-scored.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from fpscale.bench.scenario import Rescoring
from fpscale.matcher import mcc, minutiae
from fpscale.synth.impressions import impression_batch
from fpscale.synth.population import (PopulationSpec, best_quality, gallery_impressions,
                                     submission_impressions)

BATCH = 100  # searches re-scored at a time (bounded template memory)...
BATCH_CANDIDATES = 100  # ...when their lists are at most this long


def batch_searches(k: int) -> int:
    """Searches re-scored at a time when each lists k candidates: BATCH, or
    fewer for longer lists, so that a batch holds at most BATCH x
    BATCH_CANDIDATES candidates' templates."""
    return max(1, min(BATCH, BATCH * BATCH_CANDIDATES // max(k, 1)))


def _templates(spec: PopulationSpec, imp) -> tuple[np.ndarray, np.ndarray]:
    return impression_batch(spec.seed, imp.identity, imp.finger, imp.encounter,
                            imp.capture, imp.quality, spec.extraction_noise, spec.capture_noise)


def warm_matcher(matcher: str):
    """The 1:1 matcher's match_many ("mcc" or "paired"), its kernels
    compiled (or loaded from numba's cache) by one empty comparison."""
    match_many = mcc.match_many if matcher == "mcc" else minutiae.match_many
    one = np.zeros((1, 4, 4))
    match_many(one, np.zeros(1, np.int64), one, np.zeros(1, np.int64),
               np.zeros(1, np.int64), np.zeros(1, np.int64))
    return match_many


def rescore_segment(spec: PopulationSpec, ids: np.ndarray, rescoring: Rescoring,
                    offset: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Re-score the top k = rescoring.candidates of candidate lists ids (Q, L)
    (-1 padded) of submissions offset..offset+Q-1; of a search whose best
    booking finger is at quality >= rescoring.poor_quality, the top
    rescoring.poor_candidates when that is set, keeping the best k.

    Returns (ids (Q, k), scores (Q, k) float32 fused 1:1 scores (paired
    minutiae counts, or MCC scores in [0, 1] per finger), info with timings
    and the number of 1:1 comparisons)."""
    fusion = rescoring.fusion
    if fusion not in ("sum", "max"):
        raise ValueError(f"fusion must be 'sum' or 'max', got {fusion!r}")
    Q = ids.shape[0]
    k = min(rescoring.candidates, ids.shape[1])
    deep = rescoring.longest(ids.shape[1])
    F = len(spec.search_fingers)
    out_i = np.full((Q, k), -1, dtype=np.int64)
    out_s = np.full((Q, k), -np.inf, dtype=np.float32)
    compare_s = 0.0
    comparisons = 0
    match_many = warm_matcher(rescoring.matcher)  # compiled or loaded outside the timing
    step = batch_searches(deep)
    for a in range(0, Q, step):
        b = min(Q, a + step)
        pimp = submission_impressions(spec, offset + a, offset + b)
        cand = ids[a:b, :deep]
        if deep > k:  # only poor searches keep more than k
            depth = np.where(best_quality(pimp, b - a) >= rescoring.poor_quality, deep, k)
            cand = np.where(np.arange(deep)[None, :] < depth[:, None], cand, -1)
        if not (cand >= 0).any():  # nothing listed: the -1 / -inf rows stand
            continue
        pt, pn = _templates(spec, pimp)
        p_index = np.full((b - a, F), -1, dtype=np.int64)
        p_index[pimp.row, pimp.slot] = np.arange(len(pimp.row))
        uniq = np.unique(cand[cand >= 0])
        gimp = gallery_impressions(spec, 0, 0, uniq)
        gt, gn = _templates(spec, gimp)
        g_index = np.full((len(uniq), F), -1, dtype=np.int64)
        g_index[gimp.row, gimp.slot] = np.arange(len(gimp.row))
        q_ix, c_ix = np.nonzero(cand >= 0)
        rec = np.searchsorted(uniq, cand[q_ix, c_ix])
        pairs_p = p_index[q_ix]
        pairs_g = g_index[rec]
        ok = (pairs_p >= 0) & (pairs_g >= 0)
        t0 = time.perf_counter()
        paired = match_many(pt, pn, gt, gn, pairs_p[ok], pairs_g[ok])
        compare_s += time.perf_counter() - t0
        comparisons += int(ok.sum())
        per = np.zeros(pairs_p.shape, dtype=np.float64 if rescoring.matcher == "mcc" else np.int64)
        per[ok] = paired
        fused = per.sum(axis=1) if fusion == "sum" else per.max(axis=1)
        score = np.full(cand.shape, -np.inf)
        score[q_ix, c_ix] = fused
        order = np.lexsort((np.where(cand < 0, np.iinfo(np.int64).max, cand), -score), axis=1)
        out_i[a:b] = np.take_along_axis(cand, order[:, :k], axis=1)
        out_s[a:b] = np.take_along_axis(score, order[:, :k], axis=1)
    info = {"comparisons": comparisons, "compare_s": compare_s,
            "comparisons_per_s": comparisons / compare_s if compare_s > 0 else None,
            "candidates": k, "fusion": fusion}
    return out_i, out_s, info


def unlisted_mate_scores(spec: PopulationSpec, mate: np.ndarray, unlisted: np.ndarray,
                         rescoring: Rescoring) -> np.ndarray:
    """The fused 1:1 score (Q,) of each search's (probe, mate) pair where
    unlisted (Q,) bool is set, scored as ``rescore_segment`` scores a listed
    candidate (-inf elsewhere): what a mate the candidate stage missed would
    have scored had it been listed. mate (Q,): gallery ids of submissions 0..Q-1."""
    ids = np.where(unlisted & (mate >= 0), mate, -1).astype(np.int64)[:, None]
    _, scores, _ = rescore_segment(spec, ids, replace(rescoring, candidates=1))
    return scores[:, 0].astype(np.float64)
