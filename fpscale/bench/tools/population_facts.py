"""What a population's settings produce, for reports beside fitted parameters.

A calibrated profile must not buy its accuracy with an unrealistic
population: these are the numbers to hold against the cited ranges
(docs/sources.md): minutiae per capture, pattern class shares, the quality
shares actually drawn and how strongly quality is shared within a person.
"""

from __future__ import annotations

import numpy as np

from fpscale.synth.fingers import PATTERN_CLASSES, PATTERN_FREQUENCIES, pattern_class
from fpscale.synth.impressions import CAPTURE_TYPES, capture_index, impression_batch
from fpscale.synth.population import PopulationSpec, capture_qualities

# minutiae per impression as docs/sources.md cites them (NIST SD27 and the literature)
CITED_MINUTIAE = {"plain": (30, 60), "rolled": (80, 110)}


def minutiae_counts(spec: PopulationSpec, capture: str, n: int = 2000) -> dict:
    """Minutiae per impression of n index fingers (finger 2) captured as
    ``capture`` with the spec's booking quality mix and extraction noise:
    mean and the 5th, 50th and 95th percentiles, and the cited range."""
    ids = np.arange(n, dtype=np.int64)
    fingers = np.full(n, 2, dtype=np.int64)
    enc = np.ones(n, dtype=np.int64)
    q = capture_qualities(spec, ids, fingers, enc, gallery=capture != "plain")
    _, counts = impression_batch(spec.seed, ids, fingers, enc,
                                 np.full(n, capture_index(capture), dtype=np.int64), q,
                                 float(spec.extraction_noise), float(spec.capture_noise))
    p5, p50, p95 = np.percentile(counts, [5, 50, 95])
    lo, hi = CITED_MINUTIAE.get(capture, (None, None))
    return {"capture": capture, "mean": float(counts.mean()), "p5": float(p5), "p50": float(p50),
            "p95": float(p95), "cited_low": lo, "cited_high": hi,
            "within_cited": None if lo is None else bool(lo <= counts.mean() <= hi)}


def class_shares(seed: int, n: int = 2000) -> dict:
    """Pattern class shares of n identities x 10 fingers, with the cited ones."""
    classes = np.array([pattern_class(seed, i, f) for i in range(n) for f in range(1, 11)])
    got = np.bincount(classes, minlength=len(PATTERN_CLASSES)) / len(classes)
    return {c: {"share": float(g), "cited": float(e)}
            for c, g, e in zip(PATTERN_CLASSES, got, PATTERN_FREQUENCIES)}


def quality_facts(spec: PopulationSpec, n: int = 20000) -> dict:
    """Booking quality shares drawn for n persons' two index fingers, the
    configured shares, and the correlation of the two fingers' levels."""
    ids = np.repeat(np.arange(n, dtype=np.int64), 2)
    fingers = np.tile(np.array([2, 7], dtype=np.int64), n)
    q = capture_qualities(spec, ids, fingers, np.ones(2 * n, dtype=np.int64), gallery=False)
    shares = np.bincount(q, minlength=6)[1:] / len(q)
    pair = q.reshape(n, 2).astype(np.float64)
    corr = float(np.corrcoef(pair[:, 0], pair[:, 1])[0, 1]) if pair.std(0).min() > 0 else float("nan")
    return {"booking_shares": shares.tolist(), "configured": list(spec.booking_quality),
            "gallery_configured": list(spec.gallery_quality),
            "finger_level_correlation": corr, "quality_correlation": spec.quality_correlation}


def population_facts(spec: PopulationSpec) -> dict:
    """Every fact above for one population spec."""
    caps = [c for c in ("plain", "rolled") if c in CAPTURE_TYPES]
    return {"minutiae": [minutiae_counts(spec, c) for c in caps],
            "classes": class_shares(spec.seed), "quality": quality_facts(spec)}
