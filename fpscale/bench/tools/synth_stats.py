"""Statistics of the synthetic population (``fpscale synth-stats``).

Class frequencies, minutiae counts by capture type and quality, and the
genuine and impostor similarity distributions (d-prime, EER) for one
finger, two index fingers and ten fingers.
"""

from __future__ import annotations

import numpy as np

from fpscale.bench.measure.individuality import compare
from fpscale.synth.embedding import encode
from fpscale.synth.fingers import PATTERN_CLASSES, PATTERN_FREQUENCIES, pattern_class
from fpscale.synth.impressions import CAPTURE_TYPES, PLAIN, ROLLED
from fpscale.synth.population import LEGACY_FINGERS


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: where FNMR (genuine < T) meets FMR (impostor >= T)."""
    g = np.sort(genuine)
    i = np.sort(impostor)
    t = np.unique(np.concatenate([g, i]))
    fnmr = np.searchsorted(g, t, side="left") / len(g)
    fmr = 1 - np.searchsorted(i, t, side="left") / len(i)
    k = np.argmin(np.abs(fnmr - fmr))
    return float((fnmr[k] + fmr[k]) / 2)


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    return float((genuine.mean() - impostor.mean()) / np.sqrt((genuine.var() + impostor.var()) / 2))


def synth_stats(seed: int = 0, n: int = 2000) -> dict:
    """Population statistics from n identities (all ten fingers)."""
    ids = np.arange(n, dtype=np.int64)
    classes = np.array([[pattern_class(seed, i, f) for f in range(1, 11)] for i in ids]).ravel()
    freq = np.bincount(classes, minlength=5) / len(classes)
    counts = {}
    for cap in (0, 1, 2, 3):
        for q in (1, 3, 5):
            _, _, c = encode(seed, ids[: min(n, 500)], 2, 1, cap, q)
            counts[f"{CAPTURE_TYPES[cap]} q{q}"] = (float(c.mean()), int(np.percentile(c, 5)),
                                                    int(np.percentile(c, 95)))
    # enrolment rolled quality 2 against booking plain quality 3, all ten fingers
    rid = np.repeat(ids, 10)
    fing = np.tile(np.arange(1, 11), n)
    a, _, _ = encode(seed, rid, fing, 0, ROLLED, 2)
    b, _, _ = encode(seed, rid, fing, 1, PLAIN, 3)
    a = a.reshape(n, 10, -1)
    b = b.reshape(n, 10, -1)
    per_finger = np.einsum("nfd,nfd->nf", a, b)
    shift = np.roll(np.arange(n), 1)
    imp_finger = np.einsum("nfd,nfd->nf", a, b[shift])
    sets = {"one finger": [1], "two index fingers": [f - 1 for f in LEGACY_FINGERS],
            "ten fingers": list(range(10))}
    sims = {}
    for name, cols in sets.items():
        g = per_finger[:, cols].sum(1)
        i = imp_finger[:, cols].sum(1)
        sims[name] = {"genuine_mean": float(g.mean()), "genuine_sd": float(g.std()),
                      "impostor_mean": float(i.mean()), "impostor_sd": float(i.std()),
                      "d_prime": d_prime(g, i), "eer": eer(g, i)}
    return {"seed": seed, "identities": n, "individuality": compare(seed, min(n, 2000)),
            "class_frequency": dict(zip(PATTERN_CLASSES, freq.tolist())),
            "class_frequency_expected": dict(zip(PATTERN_CLASSES, PATTERN_FREQUENCIES.tolist())),
            "minutiae": counts, "similarity": sims}


def print_stats(s: dict) -> None:
    print(f"fpscale synthetic population: seed {s['seed']}, {s['identities']:,} identities x 10 fingers\n")
    print("pattern class     share   expected")
    for k, v in s["class_frequency"].items():
        print(f"  {k:14s} {v:6.3f}   {s['class_frequency_expected'][k]:6.3f}")
    print("\nminutiae per impression (index finger): mean [5th, 95th percentile]")
    for k, (m, lo, hi) in s["minutiae"].items():
        print(f"  {k:16s} {m:6.1f} [{lo}, {hi}]")
    print("\nsimilarity, rolled q2 enrolment vs plain q3 booking (float vectors, sum of cosines)")
    print("  fingers              genuine mean (sd)   impostor mean (sd)   d'     EER")
    for k, v in s["similarity"].items():
        print(f"  {k:20s} {v['genuine_mean']:6.3f} ({v['genuine_sd']:.3f})     "
              f"{v['impostor_mean']:6.3f} ({v['impostor_sd']:.3f})      {v['d_prime']:5.2f}  {v['eer']:.4f}")
    ind = s["individuality"]
    print(f"\nchance correspondences, plain impostor pairs: Pankanti et al. model (M = {ind.cells}, "
          f"l = {ind.direction_agreement:.3f}, m = {ind.minutiae_probe}, n = {ind.minutiae_gallery}) against fpscale's matcher")
    print("  q    model P(>= q)   simulated P(>= q)")
    for q in (6, 8, 10, 12, 15, 20):
        if q < len(ind.q):
            print(f"  {q:<4d} {ind.model_p_at_least[q]:.2e}        {ind.observed_p_at_least[q]:.2e}")
