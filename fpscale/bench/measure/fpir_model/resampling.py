"""Bootstrap replicates for the FPIR models' intervals.

Intervals are percentile intervals over bootstrap replicates that resample
whole searches, or whole clusters (persons) when the ladder carries a
``cluster`` array, and refit the model in each. Default 2000 replicates; all
draws come from ``numpy.random.default_rng(seed)``.

Hand-written rather than scipy.stats.bootstrap: every fit here draws its
replicates as integer weights over whole clusters, in chunks, so that a
refit is a weighted sum and the same seed gives the same replicates to
the fit and to every prediction made from it.
"""

from __future__ import annotations

import numpy as np

CHUNK = 256                  # bootstrap replicates drawn at a time


def index_clusters(cluster: np.ndarray | None, q: int | None = None) -> tuple[np.ndarray, int]:
    """(index (Q,) of each search's cluster in 0..G-1, G)."""
    if cluster is None:
        return np.arange(q), int(q)
    _, idx = np.unique(cluster, return_inverse=True)
    return idx.ravel(), int(idx.max()) + 1 if len(idx) else 0


def bootstrap_weights(g: int, n_boot: int, seed: int, chunk: int = CHUNK):
    """Bootstrap weights in chunks: (b, G) int counts, each row the number
    of times each of G units is drawn when G are drawn with replacement."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draw = rng.integers(0, g, size=(b, g))
        flat = (draw + (np.arange(b) * g)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * g).reshape(b, g).astype(np.float64)
        done += b


def percentile_interval(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval over axis 0 of replicates x."""
    a = (1 - level) / 2
    return np.nanquantile(x, a, axis=0), np.nanquantile(x, 1 - a, axis=0)
