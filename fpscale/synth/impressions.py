"""Impressions: each capture of a finger is a noisy view of its master.

A capture applies, in this order: the captured area (an ellipse window on the
pad, placed with some jitter), missed minutiae, a smooth non-linear skin
distortion, per-minutia position and angle jitter, ridge-ending/bifurcation
type flips, spurious minutiae, then a rigid rotation and translation onto the
sensor. Units: mm and radians, as in ``fpscale.synth.fingers``.

Capture types and what they set (the window is a fraction of the pad's
semi-axes):

============  ======  =========  ===========  ========  =========
capture       window  centre sd  rotation sd  distort.  transl. sd
============  ======  =========  ===========  ========  =========
rolled        1.00    0.5 mm     8 deg        0.35 mm   2 mm
plain         0.70    1.5 mm     12 deg       0.25 mm   3 mm
legacy_flat   0.62    2.0 mm     15 deg       0.30 mm   3 mm
partial       0.38    3.5 mm     25 deg       0.35 mm   4 mm
============  ======  =========  ===========  ========  =========

``capture_noise`` (``population.capture_noise``) scales the last four
columns together: 1 is this table, 0 places every capture of a finger alike.

Quality levels 1 (best) .. 5 (worst), in the spirit of NFIQ, set the
extraction errors:

=======  ===========  ==========  ==========  ==============  =========
quality  position sd  angle sd    miss prob.  spurious/mm^2   type flip
=======  ===========  ==========  ==========  ==============  =========
1        0.10 mm      4 deg       0.08        0.010           0.05
2        0.15 mm      6 deg       0.13        0.020           0.08
3        0.20 mm      8 deg       0.20        0.035           0.12
4        0.28 mm      11 deg      0.30        0.060           0.18
5        0.38 mm      15 deg      0.42        0.090           0.25
=======  ===========  ==========  ==========  ==============  =========

These amounts are fpscale's modelling choices, not measurements: they are set
so that plain impressions show about 30-60 minutiae and rolled ones about
80-110 (the counts docs/sources.md cites from NIST SD27 and the literature), and
so that worse quality loses true minutiae and gains false ones as minutiae
extractors do. ``tests/test_synth.py`` checks the resulting counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fpscale.synth.angles import fast_cos, fast_sin, wrap_angle
from fpscale.synth.fingers import (ARCH, MAX_MASTER, MINUTIA_DENSITY, finger_semi_axes, in_pad,
                                   master_finger)
from fpscale.synth.rng import STREAM_IMPRESSION, normal, normal_pair, open_stream, poisson, uniform

CAPTURE_TYPES = ("rolled", "plain", "legacy_flat", "partial")
ROLLED, PLAIN, LEGACY_FLAT, PARTIAL = 0, 1, 2, 3
QUALITY_LEVELS = (1, 2, 3, 4, 5)

_WINDOW = np.array([1.00, 0.70, 0.62, 0.38])
_CENTRE_SD = np.array([0.5, 1.5, 2.0, 3.5])
_ROT_SD = np.deg2rad(np.array([8.0, 12.0, 15.0, 25.0]))
_DISTORT = np.array([0.35, 0.25, 0.30, 0.35])
_TRANS_SD = np.array([2.0, 3.0, 3.0, 4.0])

_POS_SD = np.array([0.10, 0.15, 0.20, 0.28, 0.38])
_ANG_SD = np.deg2rad(np.array([4.0, 6.0, 8.0, 11.0, 15.0]))
_MISS = np.array([0.08, 0.13, 0.20, 0.30, 0.42])
_SPURIOUS = np.array([0.010, 0.020, 0.035, 0.060, 0.090])
_FLIP = np.array([0.05, 0.08, 0.12, 0.18, 0.25])

# reference point (core) detection error by quality
_REF_POS_SD = np.array([0.3, 0.45, 0.6, 0.8, 1.0])
_REF_ANG_SD = np.deg2rad(np.array([3.0, 5.0, 7.0, 9.0, 12.0]))
_REF_MISS = np.array([0.01, 0.02, 0.04, 0.07, 0.12])

MAX_IMPRESSION = 256  # capacity of an impression buffer
_TWO_PI = 2.0 * np.pi
_K = 2.0 * np.pi / 25.0  # distortion wavelength about the size of a finger


@njit(cache=True, inline="always")
def _window(st, ax: float, ay: float, capture: int, capture_noise: float) -> tuple:
    # the captured window (centre x, y, semi-axes x, y; mm, finger
    # coordinates): the first two draws of a capture's stream. Each spread
    # is times capture_noise first: at 1 the products are the table's
    # values exactly, so the default draws are unchanged
    centre_sd = _CENTRE_SD[capture] * capture_noise
    cx = centre_sd * normal(st)
    cy = 0.5 + centre_sd * normal(st)
    return cx, cy, ax * _WINDOW[capture], ay * _WINDOW[capture]


@njit(cache=True)
def capture_windows(seed: int, identities: np.ndarray, fingers: np.ndarray,
                    encounters: np.ndarray, captures: np.ndarray,
                    capture_noise: float = 1.0) -> np.ndarray:
    """The captured window of each impression, (n, 4) float64: centre x, y
    and semi-axes x, y of the ellipse (mm, in the master finger's
    coordinates) whose master minutiae the capture holds before extraction
    errors, as ``impression_from_master`` places it for those keys."""
    # two draws a capture: a parallel loop would cost more to compile than it saves
    n = identities.shape[0]
    out = np.empty((n, 4))
    for t in range(n):
        st = open_stream(seed, identities[t], fingers[t], encounters[t], STREAM_IMPRESSION)
        ax, ay = finger_semi_axes(fingers[t])
        out[t, 0], out[t, 1], out[t, 2], out[t, 3] = _window(st, ax, ay, captures[t],
                                                             capture_noise)
    return out


@njit(cache=True)
def impression_from_master(seed: int, identity: int, finger: int, encounter: int,
                           capture: int, quality: int, noise: float, master: np.ndarray,
                           n_master: int, ref_master: np.ndarray, pattern: int,
                           out: np.ndarray, ref_out: np.ndarray, capture_noise: float = 1.0) -> int:
    """Capture one impression of a master finger.

    master: (MAX_MASTER, 4) rows (x, y, theta, type) of which n_master used;
    ref_master (3,) its reference point and axis; pattern its class (plain
    arches have no core: their reference is found less precisely). out: (MAX_IMPRESSION, 4)
    float64 buffer, filled with the captured minutiae in sensor coordinates
    (mm, radians); ref_out (4,): the detected reference (x, y, angle, found),
    found = 0 when it lies outside the captured area or detection fails.
    quality is 1..5; noise scales every extraction error of that quality
    (position and angle jitter, miss, flip and spurious rates, reference
    point errors): 1 is the table above, a better extractor is below 1.
    capture_noise scales how differently the finger lies on each capture:
    the window's centre, rotation and translation spreads and the skin
    distortion of the capture type (1 is the table above; 0 places every
    capture of a finger alike). Returns the number of minutiae written.
    """
    st = open_stream(seed, identity, finger, encounter, STREAM_IMPRESSION)
    q = quality - 1
    ax, ay = finger_semi_axes(finger)
    cx, cy, wx, wy = _window(st, ax, ay, capture, capture_noise)
    # the other spreads, too, are times capture_noise before any draw
    amp = (_DISTORT[capture] * capture_noise) * (1.0 + 0.3 * normal(st))
    p1 = _TWO_PI * uniform(st)
    p2 = _TWO_PI * uniform(st)
    p3 = _TWO_PI * uniform(st)
    p4 = _TWO_PI * uniform(st)
    rot = (_ROT_SD[capture] * capture_noise) * normal(st)
    trans_sd = _TRANS_SD[capture] * capture_noise
    tx = trans_sd * normal(st)
    ty = trans_sd * normal(st)
    c = np.cos(rot)
    s = np.sin(rot)
    pos_sd = noise * _POS_SD[q]
    ang_sd = noise * _ANG_SD[q]
    miss = min(noise * _MISS[q], 1.0)
    flip = min(noise * _FLIP[q], 1.0)
    cap = out.shape[0]
    n = 0
    spare = 0.0  # Box-Muller gives normals in pairs: the angle jitter of
    have_spare = False  # two minutiae comes from one pair
    for i in range(n_master):
        x = master[i, 0]
        y = master[i, 1]
        if ((x - cx) / wx) ** 2 + ((y - cy) / wy) ** 2 > 1.0:
            continue
        if uniform(st) < miss:
            continue
        if n >= cap:
            break
        # smooth skin distortion, then extraction jitter
        jx, jy = normal_pair(st)
        xd = x + amp * fast_sin(_K * x + p1) * fast_cos(_K * y + p2) + pos_sd * jx
        yd = y + amp * fast_cos(_K * x + p3) * fast_sin(_K * y + p4) + pos_sd * jy
        if have_spare:
            ja = spare
        else:
            ja, spare = normal_pair(st)
        have_spare = not have_spare
        th = master[i, 2] + ang_sd * ja
        typ = master[i, 3]
        if uniform(st) < flip:
            typ = 1.0 - typ
        out[n, 0] = c * xd - s * yd + tx
        out[n, 1] = s * xd + c * yd + ty
        out[n, 2] = wrap_angle(th + rot)
        out[n, 3] = typ
        n += 1
    # spurious minutiae over the captured part of the pad
    n_spur = poisson(st, noise * _SPURIOUS[q] * np.pi * wx * wy * 0.9)
    k = 0
    tries = 0
    while k < n_spur and tries < 20 * n_spur and n < cap:
        tries += 1
        x = cx + (2.0 * uniform(st) - 1.0) * wx
        y = cy + (2.0 * uniform(st) - 1.0) * wy
        if ((x - cx) / wx) ** 2 + ((y - cy) / wy) ** 2 > 1.0 or not in_pad(x, y, ax, ay):
            continue
        th = _TWO_PI * uniform(st)
        out[n, 0] = c * x - s * y + tx
        out[n, 1] = s * x + c * y + ty
        out[n, 2] = wrap_angle(th + rot)
        out[n, 3] = 1.0 if uniform(st) < 0.5 else 0.0
        n += 1
        k += 1
    # reference point (core) detection: distorted, moved, noisy, may fail
    rx = ref_master[0]
    ry = ref_master[1]
    inside = ((rx - cx) / max(wx - 1.0, 0.5)) ** 2 + ((ry - cy) / max(wy - 1.0, 0.5)) ** 2 <= 1.0
    pos_scale = noise * (2.0 if pattern == ARCH else 1.0)
    xd = rx + amp * np.sin(_K * rx + p1) * np.cos(_K * ry + p2) + pos_scale * _REF_POS_SD[q] * normal(st)
    yd = ry + amp * np.cos(_K * rx + p3) * np.sin(_K * ry + p4) + pos_scale * _REF_POS_SD[q] * normal(st)
    ref_out[0] = c * xd - s * yd + tx
    ref_out[1] = s * xd + c * yd + ty
    ref_out[2] = wrap_angle(ref_master[2] + rot + noise * _REF_ANG_SD[q] * normal(st))
    ref_out[3] = 1.0 if inside and uniform(st) >= noise * _REF_MISS[q] else 0.0
    return n


@njit(cache=True)
def impression(seed: int, identity: int, finger: int, encounter: int,
               capture: int, quality: int, noise: float, out: np.ndarray,
               ref_out: np.ndarray, capture_noise: float = 1.0) -> int:
    """Master and capture in one call; see ``impression_from_master``."""
    master = np.empty((MAX_MASTER, 4))
    ref = np.empty(3)
    n_master, cls = master_finger(seed, identity, finger, master, ref)
    return impression_from_master(seed, identity, finger, encounter, capture,
                                  quality, noise, master, n_master, ref, cls, out, ref_out,
                                  capture_noise)


def expected_minutiae(finger: int, capture: int, quality_shares, noise: float) -> float:
    """Expected minutiae count of one impression of a finger position 1..10
    and capture type index, with capture quality drawn from quality_shares
    (5 shares, quality 1..5) at extraction noise scale noise: the master's
    density over the captured window (the whole pad at most), less the
    missed ones, plus the spurious ones. The window is taken as lying on
    the pad, so this is 4-9% above generated means (index fingers, 4,000
    impressions; tests/test_synth.py)."""
    ax, ay = finger_semi_axes(finger)
    w = _WINDOW[capture]
    window = np.pi * w * w * ax * ay
    pad = 0.87 * np.pi * ax * ay  # as fpscale.synth.fingers counts the pad
    shares = np.asarray(quality_shares, dtype=np.float64)
    miss = float(shares @ np.minimum(noise * _MISS, 1.0))
    spurious = float(shares @ (noise * _SPURIOUS)) * window * 0.9
    return MINUTIA_DENSITY * min(window, pad) * (1.0 - miss) + spurious


def capture_index(name: str) -> int:
    """Index of a capture type name; ValueError naming the allowed ones."""
    try:
        return CAPTURE_TYPES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown capture type {name!r}; allowed: {', '.join(CAPTURE_TYPES)}"
        ) from None


def minutiae(seed: int, identity: int, finger: int, encounter: int,
             capture: str | int = "plain", quality: int = 2,
             with_reference: bool = False, noise: float = 1.0, capture_noise: float = 1.0):
    """One impression's minutiae as an (n, 4) float64 array (x mm, y mm,
    theta rad, type 0 ending / 1 bifurcation); with_reference=True also
    returns the detected reference point (4,): x, y, angle, found; noise
    scales the extraction errors, capture_noise the placement
    (``impression_from_master``)."""
    cap = capture_index(capture) if isinstance(capture, str) else int(capture)
    if not 1 <= quality <= 5:
        raise ValueError(f"quality must be 1..5, got {quality}")
    if not 1 <= finger <= 10:
        raise ValueError(f"finger must be 1..10, got {finger}")
    out = np.empty((MAX_IMPRESSION, 4))
    ref = np.empty(4)
    n = impression(seed, identity, finger, encounter, cap, quality, float(noise), out, ref,
                   float(capture_noise))
    return (out[:n].copy(), ref) if with_reference else out[:n].copy()


@njit(cache=True, parallel=True)
def impression_batch(seed: int, identities: np.ndarray, fingers: np.ndarray,
                     encounters: np.ndarray, captures: np.ndarray,
                     qualities: np.ndarray, noise: float, capture_noise: float = 1.0) -> tuple:
    """Minutiae of many impressions: ((n, MAX_IMPRESSION, 4) float64 padded
    with zeros, counts (n,) int64). Row t is what ``minutiae`` returns for the
    keys of row t and the extraction and capture noise scales."""
    n = identities.shape[0]
    out = np.zeros((n, MAX_IMPRESSION, 4))
    counts = np.zeros(n, dtype=np.int64)
    for t in prange(n):
        ref = np.empty(4)
        counts[t] = impression(seed, identities[t], fingers[t], encounters[t],
                               captures[t], qualities[t], noise, out[t], ref, capture_noise)
    return out, counts
