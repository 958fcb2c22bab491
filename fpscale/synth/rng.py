"""Counter-based random numbers keyed by (seed, identity, finger, encounter, stream).

numpy's Generator is sequential: to make every template a pure function of its
keys, whatever the chunk size, order or thread, each impression needs its own
stream that can be opened in O(1) inside a parallel numba loop. No well-kept
library offers that inside numba, so this module hand-writes a small one:
SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) used both to hash the key tuple
into a 64-bit state and as the generator that steps that state. SplitMix64
passes BigCrush; it is ample for simulation noise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fpscale.synth.angles import fast_cos, fast_sin

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

# Stream labels keep independent draws for one key apart.
STREAM_MASTER = 1
STREAM_IMPRESSION = 2
STREAM_RECORD = 3
STREAM_SUBMISSION = 4
STREAM_QUALITY = 5


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def key_state(seed: int, identity: int, finger: int, encounter: int, stream: int) -> np.uint64:
    """Hash a key tuple into a 64-bit generator state."""
    s = _mix(np.uint64(seed) + _GOLDEN)
    s = _mix(s ^ (np.uint64(identity) + _GOLDEN))
    s = _mix(s ^ (np.uint64(finger + 16) * _GOLDEN))
    # encounter may be -1 (master); shift so the cast is well defined
    s = _mix(s ^ (np.uint64(encounter + 1024) * _M1))
    s = _mix(s ^ (np.uint64(stream) * _M2))
    return s


@njit(cache=True, inline="always")
def next_u64(state: np.ndarray) -> np.uint64:
    """Advance a 1-element uint64 state array and return 64 random bits."""
    state[0] += _GOLDEN
    return _mix(state[0])


@njit(cache=True, inline="always")
def u64_ahead(state: np.ndarray, k: int) -> np.uint64:
    """What the k-th call of ``next_u64`` from now (k >= 1) would return,
    without advancing the state. SplitMix64's state after k steps is the
    state plus k times its increment, so draws can be taken in any order
    (and in SIMD loops) and still be those of the sequential stream."""
    return _mix(state[0] + np.uint64(k) * _GOLDEN)


@njit(cache=True, inline="always")
def skip(state: np.ndarray, k: int) -> None:
    """Advance the state past k draws, as k calls of ``next_u64`` would."""
    state[0] += np.uint64(k) * _GOLDEN


@njit(cache=True, inline="always")
def uniform(state: np.ndarray) -> float:
    """Uniform float64 in [0, 1)."""
    return float(next_u64(state) >> np.uint64(11)) * _INV53


@njit(cache=True, inline="always")
def normal(state: np.ndarray) -> float:
    """Standard normal by Box-Muller (one of the pair; simplicity over speed)."""
    u1 = uniform(state)
    u2 = uniform(state)
    return np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True, inline="always")
def normal_pair(state: np.ndarray) -> tuple:
    """Two independent standard normals from one Box-Muller draw (sine and
    cosine from polynomials within 4e-9: this is the hot path of captures)."""
    u1 = uniform(state)
    u2 = uniform(state)
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    a = 2.0 * np.pi * u2
    return r * fast_cos(a), r * fast_sin(a)


@njit(cache=True)
def poisson(state: np.ndarray, lam: float) -> int:
    """Poisson draw by inversion; lam is small (tens at most) here."""
    if lam <= 0.0:
        return 0
    u = uniform(state)
    p = np.exp(-lam)
    cdf = p
    k = 0
    while u > cdf and k < 1000:
        k += 1
        p *= lam / k
        cdf += p
    return k


@njit(cache=True)
def categorical(state: np.ndarray, cdf: np.ndarray) -> int:
    """Index i with probability cdf[i] - cdf[i-1]; cdf ends at 1."""
    u = uniform(state)
    for i in range(cdf.shape[0]):
        if u < cdf[i]:
            return i
    return cdf.shape[0] - 1


@njit(cache=True)
def open_stream(seed: int, identity: int, finger: int, encounter: int, stream: int) -> np.ndarray:
    """A fresh 1-element state array for the key tuple."""
    st = np.empty(1, dtype=np.uint64)
    st[0] = key_state(seed, identity, finger, encounter, stream)
    return st
