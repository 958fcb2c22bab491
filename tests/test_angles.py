import numpy as np
from numba import njit

from fpscale.synth.angles import fast_atan2, fast_cos, fast_sin, fine_atan2, wrap_angle


@njit
def _apply(f, y, x):
    out = np.empty(len(y))
    for i in range(len(y)):
        out[i] = f(y[i], x[i])
    return out


def _circular_error(a, b):
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def test_atan2_approximations_against_numpy():
    rng = np.random.default_rng(0)
    y, x = rng.standard_normal((2, 200_000)) * np.exp(rng.uniform(-5, 5, (2, 200_000)))
    y[:4], x[:4] = (0.0, 1.0, -1.0, 0.0), (1.0, 0.0, 0.0, -1.0)
    exact = np.arctan2(y, x)
    assert _circular_error(_apply(fine_atan2, y, x), exact).max() < 2e-6
    assert _circular_error(_apply(fast_atan2, y, x), exact).max() < 0.005


@njit
def _wrap_all(a):
    out = np.empty(len(a))
    for i in range(len(a)):
        out[i] = wrap_angle(a[i])
    return out


def test_wrap_angle_lands_in_range_and_keeps_the_direction():
    a = np.concatenate([np.linspace(-50, 50, 10_001), [-2 * np.pi, 0.0, 2 * np.pi, -1e-18]])
    w = _wrap_all(a)
    assert np.all((w >= 0) & (w < 2 * np.pi))
    assert _circular_error(w, a).max() < 1e-12


@njit
def _sin_cos(a):
    s = np.empty(len(a))
    c = np.empty(len(a))
    for i in range(len(a)):
        s[i] = fast_sin(a[i])
        c[i] = fast_cos(a[i])
    return s, c


def test_fast_sin_and_cos_against_numpy():
    a = np.concatenate([np.linspace(-40, 40, 400_001), [0.0, np.pi / 2, -np.pi, 1e4 + 0.3]])
    s, c = _sin_cos(a)
    assert np.abs(s - np.sin(a)).max() < 5e-9
    assert np.abs(c - np.cos(a)).max() < 5e-9
