"""The re-scored pipeline's ladder: every rung's candidate list re-scored.

A ladder scan with ``keep`` holds each rung's top-k list, what an exact
search of the rung's gallery returns. Re-scoring those lists by the 1:1
matcher, as the searches' lists are re-scored, gives the whole pipeline's
best non-mate score at every gallery size, so the pipeline is projected in
N from its own scores rather than from the first stage's.

Two things differ from a first-stage ladder. A search's lists overlap from
rung to rung, so each distinct candidate is compared once (``rung_union``).
And the galleries are nested but the pipeline's best non-mate need not
grow with N: a non-mate that re-scores high at one rung can be pushed out
of the next rung's top k by records the first stage ranks higher. The
state says so (``nested`` False) and the projection does not take a
running maximum over rungs.
"""

from __future__ import annotations

import numpy as np

from fpscale.bench.measure.list_ladder import ladder_state

PIPELINE_SUFFIX = "+minutiae"  # a re-scored pipeline's name: finger set + suffix


def rung_union(list_ids: np.ndarray) -> np.ndarray:
    """(Q, R x k) int64: each search's distinct candidates over all rungs
    of list_ids (Q, R, k), ascending, the rest of the row -1."""
    Q = list_ids.shape[0]
    flat = np.sort(list_ids.reshape(Q, -1), axis=1)
    repeat = np.zeros(flat.shape, dtype=bool)
    repeat[:, 1:] = flat[:, 1:] == flat[:, :-1]
    flat[repeat | (flat < 0)] = np.iinfo(np.int64).max
    flat.sort(axis=1)
    flat[flat == np.iinfo(np.int64).max] = -1
    return flat


def rescored_rung_lists(list_ids: np.ndarray, ids: np.ndarray,
                        scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rung's list (Q, R, k) of ids and re-scored scores, re-ranked
    (higher first, ties to the lower id, (-1, -inf) padding last), given
    the re-scored union of each search: ids, scores (Q, W), -1 padded."""
    Q, R, k = list_ids.shape
    # look every (search, id) up in its row of the union: one sorted key
    # q * span + id over all rows
    span = int(max(list_ids.max(initial=0), ids.max(initial=0))) + 2
    row = np.arange(Q, dtype=np.int64)[:, None]
    have = ids >= 0
    keys = (row * span + ids)[have]
    vals = scores[have]
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    want = row[:, :, None] * span + list_ids
    found = np.zeros(list_ids.shape, dtype=bool)
    s = np.full(list_ids.shape, -np.inf, dtype=np.float32)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        found = (list_ids >= 0) & (keys[at] == want)
        s = np.where(found, vals[at], -np.inf).astype(np.float32)
    if ((list_ids >= 0) & ~found).any():
        raise ValueError("a rung's candidate is missing from the re-scored union")
    id_key = np.where(list_ids < 0, np.iinfo(np.int64).max, list_ids)
    order = np.lexsort((id_key, -s.astype(np.float64)), axis=2)
    return np.take_along_axis(list_ids, order, axis=2), np.take_along_axis(s, order, axis=2)


def rescored_ladder_state(rungs: np.ndarray, list_ids: np.ndarray, ids: np.ndarray,
                          scores: np.ndarray, mate: np.ndarray) -> dict[str, np.ndarray]:
    """The ladder state of the re-scored pipeline (the keys of
    ``LadderScan.state``, ``nested`` False): rungs (R,); list_ids (Q, R, k)
    the first stage's rung lists; ids, scores (Q, W) their re-scored union;
    mate (Q,) gallery id or -1 (a mate enrolled at a rung only when its id
    is below the rung's size)."""
    lid, ls = rescored_rung_lists(list_ids, ids, scores)
    st = ladder_state([(lid[:, r], ls[:, r]) for r in range(len(rungs))], list(rungs), mate)
    st["top_nonmate"] = st["top_nonmate"].astype(np.float32)
    st["mate_score"] = st["mate_score"].astype(np.float32)
    st["mate"] = np.asarray(mate, dtype=np.int64)
    st["nested"] = np.array(False)
    return st
