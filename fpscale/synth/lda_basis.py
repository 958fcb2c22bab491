"""Learn the linear discriminant basis that ``fpscale.synth.embedding`` ships.

Run ``python -m fpscale.synth.lda_basis`` to rebuild ``fpscale/synth/lda_basis.npz``
after changing the pair histogram. The reference population is fixed (its
own seed, never a scenario's): pairs of impressions of the same finger with
mixed capture types and qualities. Fisher LDA solves
St v = lambda Sw v (total against within-finger scatter) with
scipy.linalg.eigh; the leading ``KEEP`` directions are stored in float32 so
that every machine reads the same numbers instead of re-deriving them with
its own BLAS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from fpscale.synth.features import N_FEATURES, R_MAX, feature_batch

REFERENCE_SEED = 0x2EF_5EED
N_REFERENCE = 8000
KEEP = 256
RIDGE = 1e-4  # relative ridge on Sw: keeps near-empty bins from dominating


def reference_pairs(n: int = N_REFERENCE) -> tuple[np.ndarray, np.ndarray]:
    """Two feature arrays (n, N_FEATURES): impressions of the same n fingers.

    A reference part that was not found is filled with the mean of the found
    ones (two passes), as the encoder fills it with the learned mean."""
    t = np.arange(n, dtype=np.int64)
    fingers = 1 + t % 10
    keys_a = (REFERENCE_SEED, t, fingers, np.full(n, 1), t % 3, 1 + t % 5)
    keys_b = (REFERENCE_SEED, t, fingers, np.full(n, 2), np.array([1, 0, 1])[(t // 3) % 3],
              1 + (t // 5) % 5)
    nan = np.full(N_FEATURES, np.nan)
    a = feature_batch(*keys_a, nan)
    b = feature_batch(*keys_b, nan)
    fill = np.nanmean(np.vstack([a, b]), axis=0)
    return feature_batch(*keys_a, fill), feature_batch(*keys_b, fill)


def learn(n: int = N_REFERENCE) -> tuple[np.ndarray, np.ndarray]:
    """(mean (N_FEATURES,), basis (N_FEATURES, KEEP)) learned from the reference population."""
    a, b = reference_pairs(n)
    with threadpool_limits(1):  # one thread: the same sums in the same order
        mean = (a.mean(0) + b.mean(0)) / 2
        x = np.vstack([a, b]) - mean
        st = x.T @ x / len(x)
        w = a - b
        sw = w.T @ w / (2 * len(w))
        sw += RIDGE * np.trace(sw) / N_FEATURES * np.eye(N_FEATURES)
        _, vecs = scipy.linalg.eigh(st, sw)
    basis = vecs[:, ::-1][:, :KEEP]
    # fix each direction's sign so the file does not depend on LAPACK's choice
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(KEEP)])
    return mean, basis * signs


def main() -> int:
    out = Path(__file__).with_name("lda_basis.npz")
    mean, basis = learn()
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, mean=mean.astype(np.float32), basis=basis.astype(np.float32),
                        n_features=N_FEATURES, r_max=R_MAX)
    tmp.replace(out)
    print(f"wrote {out}: mean ({N_FEATURES},), basis {basis.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
