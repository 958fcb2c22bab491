"""Learn the linear discriminant basis that ``fpscale.synth.embedding`` ships.

Run ``python -m fpscale.synth.lda_basis`` to rebuild ``fpscale/synth/lda_basis.npz``
after changing the histogram features (``--weights`` recomputes only the
quality weights, leaving the basis as shipped). The reference population is fixed
(its own seed, never a scenario's): pairs of impressions of the same finger
with mixed capture types, qualities and extraction noise. Fisher LDA solves
St v = lambda Sw v (total against within-finger scatter) with
scipy.linalg.eigh; the leading ``KEEP`` directions are stored in float32 so
that every machine reads the same numbers instead of re-deriving them with
its own BLAS, with their eigenvalues. docs/encoding.md says why the
population is this large.

The quality weights come from the same population, projected on the basis:
for each capture quality q and direction k, the finger signal s_k(q) (the
mean product of the two impressions of a finger, both at quality q) and the
total power t_k(q) (the mean square at quality q); the weight is
sqrt(s_k(q)) / t_k(q), the factor that, applied to both sides, gives each
direction's product the signal-over-variance weight of a linear
discriminant when the two sides' signals are proportional (a two-covariance
model with noise that depends on the capture's quality, as PLDA scoring
with per-sample uncertainty does). Each quality's row is scaled to a
largest weight of 1; only ratios within a row matter once the vector is
normalised.
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


def quality_weights(mean: np.ndarray, basis: np.ndarray, n: int = N_REFERENCE) -> np.ndarray:
    """Weights (5, directions) of each basis direction at capture quality
    1..5 (module docstring), from n fingers of the reference population
    encoded as the encoder does (mean (N_FEATURES,) fills a missing
    reference part and is subtracted; basis (N_FEATURES, directions))."""
    keys_a, keys_b, noise = reference_keys(n)
    qa, qb = keys_a[5], keys_b[5]
    k = basis.shape[1]
    power, signal = np.zeros((5, k)), np.zeros((5, k))
    seen, pairs = np.zeros(5), np.zeros(5)
    b64 = basis.astype(np.float64)
    with threadpool_limits(1):
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            a = (_features(keys_a, noise, lo, hi, mean) - mean) @ b64
            b = (_features(keys_b, noise, lo, hi, mean) - mean) @ b64
            for q in range(5):
                for v, qq in ((a, qa[lo:hi]), (b, qb[lo:hi])):
                    w = qq == q + 1
                    power[q] += (v[w] ** 2).sum(0)
                    seen[q] += w.sum()
                both = (qa[lo:hi] == q + 1) & (qb[lo:hi] == q + 1)
                signal[q] += (a[both] * b[both]).sum(0)
                pairs[q] += both.sum()
    power /= seen[:, None]
    signal /= pairs[:, None]
    u = np.sqrt(np.maximum(signal, 0.0)) / power
    return u / u.max(axis=1, keepdims=True)


def _save(out: Path, arrays: dict) -> None:
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(__file__).with_name("lda_basis.npz")
    if args == ["--weights"]:
        with np.load(out, allow_pickle=False) as z:
            arrays = {f: z[f] for f in z.files}
        w = quality_weights(arrays["mean"].astype(np.float64), arrays["basis"])
        arrays["quality_weights"] = w.astype(np.float32)
        _save(out, arrays)
        print(f"wrote the quality weights of {out}: {w.shape}")
        return 0
    if args:
        print("usage: python -m fpscale.synth.lda_basis [--weights]", file=sys.stderr)
        return 2
    mean, basis, lam = learn()
    mean32, basis32 = mean.astype(np.float32), basis.astype(np.float32)
    w = quality_weights(mean32.astype(np.float64), basis32)
    _save(out, dict(mean=mean32, basis=basis32, eigenvalues=lam, n_features=N_FEATURES,
                    r_max=R_MAX, n_reference=N_REFERENCE, quality_weights=w.astype(np.float32)))
    print(f"wrote {out}: mean ({N_FEATURES},), basis {basis.shape}, "
          f"eigenvalues {lam[0]:.3g} .. {lam[-1]:.3g}, quality weights {w.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
