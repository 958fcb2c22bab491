"""Learn the linear discriminant basis that ``fpscale.synth.embedding`` ships.

Run ``python -m fpscale.synth.lda_basis`` to rebuild ``fpscale/synth/lda_basis.npz``
after changing the histogram features. The reference population is fixed
(its own seed, never a scenario's): pairs of impressions of the same finger
with mixed capture types, qualities and extraction noise. Fisher LDA solves
St v = lambda Sw v (total against within-finger scatter) with
scipy.linalg.eigh; the leading ``KEEP`` directions are stored in float32 so
that every machine reads the same numbers instead of re-deriving them with
its own BLAS, with their eigenvalues. docs/encoding.md says why the
population is this large.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from fpscale.synth.features import N_FEATURES, R_MAX, feature_batch

REFERENCE_SEED = 0x2EF_5EED
# Pairs of the reference population: the scatter matrices are estimated
# from this many fingers. 8,000 left the basis fitted to its own sample
# (the mate-in-top-100 rate of docs/encoding.md rises from 0.974 to 0.991
# at 200,000 records with 300,000).
N_REFERENCE = 300_000
CHUNK = 20_000            # fingers whose features are held at once while learning
# extraction noise scales of the reference impressions, taken in turn by
# finger: the settings of the shipped profiles lie in this range
REFERENCE_NOISE = (0.5, 0.75, 1.0)
KEEP = 256
RIDGE = 1e-4  # relative ridge on Sw: keeps near-empty bins from dominating


def reference_keys(n: int = N_REFERENCE) -> tuple[tuple, tuple, np.ndarray]:
    """Keys (seed, identities, fingers, encounters, captures, qualities) of
    the two impressions of each of n reference fingers, and the noise scale
    of each finger. Every second finger is a plain capture against a plain
    capture (the partial overlap that two flat searches see); the others
    pair rolled, plain and legacy flat captures."""
    t = np.arange(n, dtype=np.int64)
    fingers = 1 + t % 10
    even = t % 2 == 0
    cap_a = np.where(even, 1, t % 3)
    cap_b = np.where(even, 1, np.array([1, 0, 1])[(t // 3) % 3])
    keys_a = (REFERENCE_SEED, t, fingers, np.full(n, 1), cap_a, 1 + t % 5)
    keys_b = (REFERENCE_SEED, t, fingers, np.full(n, 2), cap_b, 1 + (t // 5) % 5)
    noise = np.asarray(REFERENCE_NOISE)[t % len(REFERENCE_NOISE)]
    return keys_a, keys_b, noise


def _features(keys: tuple, noise: np.ndarray, lo: int, hi: int, fill: np.ndarray) -> np.ndarray:
    # features of fingers lo..hi-1, one batch per noise scale
    out = np.empty((hi - lo, N_FEATURES))
    for z in REFERENCE_NOISE:
        sel = np.flatnonzero(noise[lo:hi] == z)
        rows = lo + sel
        out[sel] = feature_batch(keys[0], *(k[rows] for k in keys[1:]), fill, z)
    return out


def scatter(n: int = N_REFERENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (N_FEATURES,), total scatter St, within-finger scatter Sw) of
    the reference population, accumulated CHUNK fingers at a time in a
    fixed order. A reference part that was not found is filled with the
    mean of the found ones (a first pass), as the encoder fills it with the
    learned mean."""
    keys_a, keys_b, noise = reference_keys(n)
    nan = np.full(N_FEATURES, np.nan)
    total = np.zeros(N_FEATURES)
    found = np.zeros(N_FEATURES)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        for keys in (keys_a, keys_b):
            x = _features(keys, noise, lo, hi, nan)
            ok = ~np.isnan(x)
            total += np.where(ok, x, 0.0).sum(0)
            found += ok.sum(0)
    fill = total / np.maximum(found, 1.0)
    sx = np.zeros(N_FEATURES)
    sxx = np.zeros((N_FEATURES, N_FEATURES))
    sww = np.zeros((N_FEATURES, N_FEATURES))
    with threadpool_limits(1):  # one thread: the same sums in the same order
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            a = _features(keys_a, noise, lo, hi, fill)
            b = _features(keys_b, noise, lo, hi, fill)
            sx += a.sum(0) + b.sum(0)
            sxx += a.T @ a + b.T @ b
            w = a - b
            sww += w.T @ w
    mean = sx / (2 * n)
    return mean, sxx / (2 * n) - np.outer(mean, mean), sww / (2 * n)


def learn(n: int = N_REFERENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (N_FEATURES,), basis (N_FEATURES, KEEP), eigenvalues (KEEP,))
    learned from n fingers of the reference population."""
    mean, st, sw = scatter(n)
    with threadpool_limits(1):
        sw = sw + RIDGE * np.trace(sw) / N_FEATURES * np.eye(N_FEATURES)
        lam, vecs = scipy.linalg.eigh(st, sw, subset_by_index=[N_FEATURES - KEEP, N_FEATURES - 1])
    lam = lam[::-1]
    basis = vecs[:, ::-1]
    # fix each direction's sign so the file does not depend on LAPACK's choice
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(KEEP)])
    return mean, basis * signs, lam


def main() -> int:
    out = Path(__file__).with_name("lda_basis.npz")
    mean, basis, lam = learn()
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, mean=mean.astype(np.float32), basis=basis.astype(np.float32),
                        eigenvalues=lam, n_features=N_FEATURES, r_max=R_MAX,
                        n_reference=N_REFERENCE)
    tmp.replace(out)
    print(f"wrote {out}: mean ({N_FEATURES},), basis {basis.shape}, "
          f"eigenvalues {lam[0]:.3g} .. {lam[-1]:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
