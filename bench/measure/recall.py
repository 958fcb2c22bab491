"""How much of the exact candidate lists an approximate backend returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Recall:
    """An approximate backend's lists against the exact float backend's."""

    recall_at_L: float
    rank1_agreement: float
    L: int


def recall_against(exact: tuple[np.ndarray, np.ndarray],
                   approx: tuple[np.ndarray, np.ndarray]) -> Recall:
    """recall@L (faiss.contrib's intersection measure) and rank-1 agreement
    of approximate lists against exact ones; each is (ids (Q, L), scores)."""
    from faiss.contrib.evaluation import knn_intersection_measure
    ei, ai = exact[0], approx[0]
    return Recall(float(knn_intersection_measure(ai, ei)), float(np.mean(ei[:, 0] == ai[:, 0])),
                  int(ei.shape[1]))
