"""The Pankanti-Prabhakar-Jain individuality model beside the simulation.

Pankanti, Prabhakar and Jain ("On the Individuality of Fingerprints", IEEE
TPAMI 24(8), 2002) model two unrelated prints as m and n minutiae dropped
into M = A / C distinguishable cells of the overlap area A (C = pi r0^2, the
tolerance disc); rho of them land in shared cells with hypergeometric
probability, and each of those also agrees in direction with probability l
(l = 2 theta0 / 2 pi for a direction tolerance theta0). The chance that
exactly q minutiae correspond is

    P(q) = sum_rho [C(m, rho) C(M - m, n - rho) / C(M, n)] C(rho, q) l^q (1 - l)^(rho - q).

The paper's own example: two prints with 36 minutiae each share 12 by
chance with probability 6.1e-8. fpscale evaluates the model with scipy.stats
(hypergeom, binom) for its own capture areas and matcher tolerances and sets
it beside the paired-minutiae counts its matcher finds between impressions
of different fingers. The matcher searches over alignments and takes the
best, so it should find more chance pairings than the fixed-alignment model:
the gap is the price of alignment search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fpscale.matcher.minutiae import A_TOL, R_TOL, match_many
from fpscale.synth.fingers import finger_semi_axes
from fpscale.synth.impressions import CAPTURE_TYPES, _WINDOW, capture_index, impression_batch


@dataclass
class Individuality:
    """The model's P(q) beside the simulation's impostor paired counts.

    The paper's M, l, m and n are named cells, direction_agreement,
    minutiae_probe and minutiae_gallery: JSON readers that fold case
    (duckdb) cannot tell M from m."""

    capture: str
    quality: int
    finger: int
    pairs: int
    area_mm2: float
    cells: int                  # M, the paper's distinguishable cells
    direction_agreement: float  # l, the chance two minutiae agree in direction
    minutiae_probe: int         # m
    minutiae_gallery: int       # n
    r_tol_mm: float
    a_tol_deg: float
    q: list[int]
    model_p: list[float]
    observed_p: list[float]
    model_p_at_least: list[float]
    observed_p_at_least: list[float]
    observed_mean: float
    model_mean: float


def pankanti_probability(M: int, m: int, n: int, q, l: float) -> np.ndarray:
    """P(exactly q corresponding minutiae) for m and n minutiae in M cells,
    direction agreement probability l; q scalar or array."""
    if not (M >= max(m, n) and m >= 0 and n >= 0 and 0.0 <= l <= 1.0):
        raise ValueError(f"need M >= max(m, n), m, n >= 0, 0 <= l <= 1; got M={M}, m={m}, n={n}, l={l}")
    q = np.atleast_1d(np.asarray(q, dtype=np.int64))
    rho = np.arange(0, min(m, n) + 1)
    place = stats.hypergeom.pmf(rho, M, m, n)            # rho minutiae share cells
    agree = stats.binom.pmf(q[:, None], rho[None, :], l)  # q of them agree in direction
    return (agree * place[None, :]).sum(axis=1)


def model_parameters(area_mm2: float, r_tol_mm: float = R_TOL, a_tol_rad: float = A_TOL) -> tuple[int, float]:
    """(M, l) for an overlap area and the matcher's tolerances."""
    M = int(round(area_mm2 / (np.pi * r_tol_mm ** 2)))
    return M, float(min(1.0, a_tol_rad / np.pi))


def impostor_paired_counts(seed: int, n_pairs: int = 2000, finger: int = 2,
                           capture: str = "plain", quality: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired counts of n_pairs impressions of different fingers (same
    position), with both impressions' minutiae counts."""
    cap = capture_index(capture)
    ids = np.arange(n_pairs, dtype=np.int64)
    ta, na = impression_batch(seed, ids, np.full(n_pairs, finger), np.full(n_pairs, 1),
                              np.full(n_pairs, cap), np.full(n_pairs, quality), 1.0)
    tb, nb = impression_batch(seed, ids + n_pairs, np.full(n_pairs, finger), np.full(n_pairs, 2),
                              np.full(n_pairs, cap), np.full(n_pairs, quality), 1.0)
    paired = match_many(ta, na, tb, nb, ids, ids)
    return paired, na, nb


def compare(seed: int, n_pairs: int = 2000, finger: int = 2, capture: str = "plain",
            quality: int = 2) -> Individuality:
    """The model's P(q) against the simulation's impostor paired counts."""
    paired, na, nb = impostor_paired_counts(seed, n_pairs, finger, capture, quality)
    ax, ay = finger_semi_axes(finger)
    k = CAPTURE_TYPES.index(capture)
    # overlap of two captures of the same window: about the window on the pad
    area = float(np.pi * ax * _WINDOW[k] * ay * _WINDOW[k] * 0.9)
    M, l = model_parameters(area)
    m, n = int(round(na.mean())), int(round(nb.mean()))
    q = np.arange(0, int(paired.max()) + 6)
    model = pankanti_probability(M, m, n, q, l)
    observed = np.bincount(paired, minlength=len(q))[: len(q)] / len(paired)
    tail_model = model[::-1].cumsum()[::-1]
    tail_obs = observed[::-1].cumsum()[::-1]
    return Individuality(capture, quality, finger, int(n_pairs), area, M, l, m, n, R_TOL,
                         float(np.degrees(A_TOL)), q.tolist(), model.tolist(), observed.tolist(),
                         tail_model.tolist(), tail_obs.tolist(), float(paired.mean()),
                         float((q * model).sum()))
