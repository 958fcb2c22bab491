"""Angle helpers shared by the numba kernels of ``synth``."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _octant_ratio(y: float, x: float) -> float:
    # min(|x|, |y|) / max(|x|, |y|) in [0, 1]: atan of it, unfolded by
    # _unfold, is atan2(y, x)
    ax = abs(x)
    ay = abs(y)
    mx = max(ax, ay)
    return min(ax, ay) / (mx if mx > 0.0 else 1.0)


@njit(cache=True, inline="always")
def _unfold(r: float, y: float, x: float) -> float:
    # selects instead of branches: octants are random here, and mispredicted
    # branches cost more than the arithmetic
    r = 1.5707963267948966 - r if abs(y) > abs(x) else r
    r = np.pi - r if x < 0.0 else r
    return -r if y < 0.0 else r


@njit(cache=True, inline="always")
def fast_atan2(y: float, x: float) -> float:
    # atan(t) ~ pi/4 t + 0.273 t (1 - t) on [0, 1], |error| < 0.004 rad: far
    # below the minutia angle jitter (>= 4 degrees), enough for generating
    # orientation fields
    t = _octant_ratio(y, x)
    return _unfold(0.7853981633974483 * t + 0.273 * t * (1.0 - t), y, x)


# atan(t) on [0, 1] as t * P(t^2): an odd degree-11 polynomial fitted by
# iteratively reweighted least squares towards the minimax error (numpy
# lstsq on 200,001 points); max error 1.7e-6 rad (tests/test_angles.py checks it)
_ATAN_C = (0.9999772220724176, -0.33262290051417914, 0.19354085345979702,
           -0.11642773256818414, 0.05264875973627386, -0.01171970461135838)


@njit(cache=True, inline="always")
def fine_atan2(y: float, x: float) -> float:
    # like fast_atan2, but within 2e-6 rad of atan2: where angles are binned
    # to build a rigid-invariant encoding, an error that depends on the
    # absolute direction (0.004 rad) would move weight between bins when the
    # print is rotated. Branch-free, so it vectorises in SIMD loops.
    t = _octant_ratio(y, x)
    t2 = t * t
    r = t * (_ATAN_C[0] + t2 * (_ATAN_C[1] + t2 * (_ATAN_C[2] + t2 * (
        _ATAN_C[3] + t2 * (_ATAN_C[4] + t2 * _ATAN_C[5])))))
    return _unfold(r, y, x)


@njit(cache=True, inline="always")
def wrap_angle(a: float) -> float:
    """Any angle (radians) to [0, 2 pi), without branches or float modulo
    (a libm fmod call per minutia costs more than the rest of its update)."""
    two_pi = 2.0 * np.pi
    a = a - two_pi * np.floor(a * (1.0 / two_pi))
    return a if a < two_pi else 0.0


# sin(r) on [-pi/2, pi/2] as r * Q(r^2): odd degree-9 polynomial fitted the
# same way as _ATAN_C; max error 3.4e-9 (tests/test_angles.py checks it)
_SIN_C = (0.9999999766012113, -0.16666647641814455, 0.008332899943076842,
          -0.00019800905031606264, 2.5905030121420105e-06)


@njit(cache=True, inline="always")
def fast_sin(a: float) -> float:
    """sin(a) within 4e-9 for |a| up to about 1e6: the capture noise needs
    smoothness, not libm's last bit, and a libm call per use dominated it."""
    q = np.floor(a * (1.0 / np.pi) + 0.5)  # nearest multiple of pi
    r = a - q * np.pi
    r2 = r * r
    s = r * (_SIN_C[0] + r2 * (_SIN_C[1] + r2 * (_SIN_C[2] + r2 * (_SIN_C[3] + r2 * _SIN_C[4]))))
    return -s if int(q) & 1 else s


@njit(cache=True, inline="always")
def fast_cos(a: float) -> float:
    """cos(a) = sin(a + pi/2), within 4e-9."""
    return fast_sin(a + 0.5 * np.pi)
