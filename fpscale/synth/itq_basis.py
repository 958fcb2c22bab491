"""Learn the iterative-quantisation code matrices that ``population.code = "itq"`` uses.

Run ``python -m fpscale.synth.itq_basis`` to rebuild
``fpscale/synth/itq_basis.npz`` (after changing the histogram features or
the LDA basis). ITQ (Gong and Lazebnik, CVPR 2011) replaces SimHash's random
projection by a learned one: the float vectors are reduced to ``bits``
dimensions (their leading principal directions when bits <= dim, else a
fixed random tight frame that spreads them over ``bits`` dimensions), then an
orthogonal rotation R is learned that minimises the quantisation error
||sign(V R) - V R||, alternating the codes and R (an orthogonal Procrustes
step). The code is the sign pattern of v @ W, W = P @ R (dim, bits): the
encoder's SimHash kernel with W in place of the random matrix, so nothing
else changes. The vectors are not centred: their mean is small (norm about
0.03) and a centring term would need another kernel input.

The reference vectors are the LDA basis's reference population
(``fpscale.synth.lda_basis.reference_keys``, its own seed, never a
scenario's): both impressions of each finger at the three reference noise
scales. Every step runs on one thread in float64 from a fixed seed, and W is
stored in float32, so the file does not depend on the machine's BLAS.
"""

from __future__ import annotations

import sys

import numpy as np
from threadpoolctl import threadpool_limits

from fpscale.synth.embedding import ITQ_FILE, ITQ_SHIPPED, encode
from fpscale.synth.lda_basis import REFERENCE_NOISE, reference_keys

N_REFERENCE = 20_000     # fingers; two impressions each
ITERATIONS = 50
SEED = 0x17C_0DE5
_DATA = ITQ_FILE


def reference_vectors(dim: int, n: int = N_REFERENCE) -> np.ndarray:
    """Float vectors (2n, dim) of the reference impressions."""
    out = []
    keys_a, keys_b, noise = reference_keys(n)
    for keys in (keys_a, keys_b):
        for z in REFERENCE_NOISE:
            rows = np.flatnonzero(noise == z)
            v, _, _ = encode(keys[0], *(k[rows] for k in keys[1:]), dim=dim, bits=64, noise=z)
            out.append(v)
    v = np.concatenate(out).astype(np.float64)
    return v[np.abs(v).sum(1) > 0]


def learn(v: np.ndarray, bits: int, iterations: int = ITERATIONS, seed: int = SEED) -> np.ndarray:
    """W (dim, bits) float64 learned by ITQ from the vectors v (n, dim)."""
    dim = v.shape[1]
    rng = np.random.default_rng([seed, dim, bits])
    with threadpool_limits(1):
        if bits <= dim:
            _, _, vt = np.linalg.svd(v - v.mean(0), full_matrices=False)
            p = vt[:bits].T
        else:
            q, _ = np.linalg.qr(rng.standard_normal((bits, dim)))
            p = q.T  # orthonormal rows: a tight frame, inner products kept
        x = v @ p
        r, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
        for _ in range(iterations):
            b = np.where(x @ r >= 0.0, 1.0, -1.0)
            u, _, wt = np.linalg.svd(x.T @ b)
            r = u @ wt
        w = p @ r
    # fix each column's sign so the file does not depend on LAPACK's choice
    signs = np.sign(w[np.argmax(np.abs(w), axis=0), np.arange(bits)])
    return w * signs


def main() -> int:
    arrays = {}
    cache: dict[int, np.ndarray] = {}
    for dim, bits in ITQ_SHIPPED:
        if dim not in cache:
            cache[dim] = reference_vectors(dim)
        arrays[f"w_{dim}_{bits}"] = learn(cache[dim], bits).astype(np.float32)
        print(f"learned dim {dim} bits {bits} from {len(cache[dim]):,} vectors", flush=True)
    tmp = _DATA.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, n_reference=N_REFERENCE, iterations=ITERATIONS, **arrays)
    tmp.replace(_DATA)
    print(f"wrote {_DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
