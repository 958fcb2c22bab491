"""A ladder of gallery sizes from candidate lists alone.

``fpscale evaluate`` has no gallery to scan: a matcher fpscale did not run
hands in its candidate lists at several gallery sizes. For every search and
size the best non-mate score is the first listed candidate that is not the
mate (a search with no non-mate listed has -inf: its best non-mate is below
everything listed). The galleries are taken to be nested, each holding the
smaller ones and every mate, as in NIST's evaluations at several gallery
sizes; the projection then sees the same ladder a synthetic run measures.

The impostor histogram behind the pooled-FMR upper bound holds the listed
non-mate scores; the impostor pairs that were not listed are counted in its
lowest bin. Counts above a score are exact wherever every search lists all
of its non-mates above that score, which holds for the tail the bound uses
(the top 2,000 pairs) unless lists are very short.
"""

from __future__ import annotations

import numpy as np

HIST_BINS = 4000


def best_nonmate(ids: np.ndarray, scores: np.ndarray, mate: np.ndarray) -> np.ndarray:
    """(Q,) best listed non-mate score of each search (-inf when none)."""
    other = (ids >= 0) & (ids != mate[:, None])
    return np.where(other, scores, -np.inf).max(axis=1, initial=-np.inf)


def _hist(ids: np.ndarray, scores: np.ndarray, mate: np.ndarray,
          gallery_size: int) -> tuple[np.ndarray, np.ndarray]:
    other = (ids >= 0) & (ids != mate[:, None])
    listed = scores[other].astype(np.float64)
    lo, hi = (float(listed.min()), float(listed.max())) if len(listed) else (0.0, 1.0)
    pad = max(hi - lo, 1.0) * 1e-6
    edges = np.linspace(lo - pad, hi + pad, HIST_BINS + 1)
    hist = np.histogram(listed, edges)[0].astype(np.int64)
    pairs = int(gallery_size) * len(mate) - int((mate >= 0).sum())
    hist[0] += max(pairs - len(listed), 0)
    return hist, edges


def ladder_state(lists: list[tuple[np.ndarray, np.ndarray]], rungs: list[int],
                 mate: np.ndarray) -> dict[str, np.ndarray]:
    """The ladder state ``fpscale.bench.measure.projection.project`` takes, from the
    candidate lists (ids, scores (Q, L_r)) at each gallery size in rungs
    (increasing) and mate (Q,) (a dense id, -1 for a non-mated search)."""
    Q = len(mate)
    top = np.column_stack([best_nonmate(i, s, mate) for i, s in lists]).reshape(Q, len(lists))
    better = np.zeros((Q, len(lists)), dtype=np.int64)
    for r, (ids, scores) in enumerate(lists):
        hit = (ids == mate[:, None]) & (mate[:, None] >= 0)
        listed = (ids >= 0).sum(axis=1)
        better[:, r] = np.where(hit.any(axis=1), hit.argmax(axis=1), listed)
    ids, scores = lists[-1]
    hit = (ids == mate[:, None]) & (mate[:, None] >= 0)
    mate_score = np.where(hit.any(axis=1), np.where(hit, scores, -np.inf).max(axis=1), -np.inf)
    hist, edges = _hist(ids, scores, mate, rungs[-1])
    return {"rungs": np.asarray(rungs, dtype=np.int64), "top_nonmate": top,
            "better_than_mate": better, "impostor_hist": hist, "hist_edges": edges,
            "mate_score": mate_score,
            # every mate is enrolled at every rung: id 0 is below the smallest
            "mate": np.where(mate >= 0, 0, -1).astype(np.int64)}
