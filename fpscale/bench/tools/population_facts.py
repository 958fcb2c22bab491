"""What a population's settings produce, for reports beside fitted parameters.

A calibrated profile must not buy its accuracy with an unrealistic
population: these are the numbers to hold against the cited ranges
(docs/sources.md): minutiae per capture, pattern class shares, the quality
shares actually drawn, how strongly quality is shared within a person, and
how much of a finger two of its captures have in common (what the capture
noise sets), against how consistently cooperative users place a finger
(docs/sources.md, docs/calibration.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fpscale.synth.fingers import (MAX_MASTER, PATTERN_CLASSES, PATTERN_FREQUENCIES, master_finger,
                                   pattern_class)
from fpscale.synth.impressions import CAPTURE_TYPES, capture_index, capture_windows, impression_batch
from fpscale.synth.population import (PopulationSpec, capture_qualities, gallery_impressions,
                                     submission_impressions, submission_truth)

# minutiae per impression as docs/sources.md cites them (NIST SD27 and the literature)
CITED_MINUTIAE = {"plain": (30, 60), "rolled": (80, 110)}
# how consistently cooperative users place a finger: the median probability
# that a minutia of one plain capture is in another capture of that finger,
# placement alone (Krivokuca, Abdulla and Swain 2014; docs/sources.md)
CITED_SHARE = 0.95
CITED_SHARE_IQR = 0.04


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


def inside(xy: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Which points (n, 2) lie in a capture window (centre x, y, semi-axes
    x, y; mm), as ``fpscale.synth.impressions`` keeps a master minutia."""
    return ((xy[:, 0] - window[0]) / window[2]) ** 2 + ((xy[:, 1] - window[1]) / window[3]) ** 2 <= 1.0


def master_points(seed: int, identities: np.ndarray, fingers: np.ndarray) -> list[np.ndarray]:
    """The master minutiae positions (k, 2) (mm) of each (identity, finger)."""
    master, ref = np.empty((MAX_MASTER, 4)), np.empty(3)
    out = []
    for ident, finger in zip(identities, fingers):
        k, _ = master_finger(seed, int(ident), int(finger), master, ref)
        out.append(master[:k, :2].copy())
    return out


def _held_share(spec: PopulationSpec, keys: tuple, points: list[np.ndarray]) -> np.ndarray:
    # keys: (identities, fingers, encounters, enrolled capture types) (n,);
    # points: their master_points, which no capture noise changes
    ids, fingers, encounters, enrolled = keys
    cn = float(spec.capture_noise)
    booked = capture_windows(spec.seed, ids, fingers, encounters,
                             np.full(len(ids), capture_index(spec.booking_capture), dtype=np.int64), cn)
    held_by = capture_windows(spec.seed, ids, fingers, np.zeros(len(ids), dtype=np.int64), enrolled, cn)
    share = np.empty(len(ids))
    for t, xy in enumerate(points):
        held = inside(xy, booked[t])
        share[t] = (held & inside(xy, held_by[t])).sum() / max(held.sum(), 1)
    return share


def shared_share(spec: PopulationSpec, identities: np.ndarray, fingers: np.ndarray,
                 encounters: np.ndarray, enrolled: np.ndarray) -> np.ndarray:
    """For each (identity, finger) (n,), of the true minutiae its booking
    capture at that encounter holds (the master's within the window, before
    any extraction error), the share its enrolment capture (type index
    ``enrolled``, encounter 0) also holds: (n,) float64 in [0, 1]."""
    keys = tuple(np.asarray(a, dtype=np.int64) for a in (identities, fingers, encounters, enrolled))
    return _held_share(spec, keys, master_points(spec.seed, keys[0], keys[1]))


def _overlap_keys(spec: PopulationSpec, n: int) -> tuple:
    # the first searched index finger of n enrolled identities, booked at
    # encounter 1 + identity: (identities, fingers, encounters, enrolled capture types)
    finger = 2 if 2 in spec.search_fingers else spec.search_fingers[0]
    gal = gallery_impressions(spec, 0, n)
    keep = gal.finger == finger
    return gal.identity[keep], gal.finger[keep], 1 + gal.identity[keep], gal.capture[keep]


def _overlap_summary(spec: PopulationSpec, keys: tuple, share: np.ndarray) -> dict:
    p5, p50, p95 = np.percentile(share, [5, 50, 95])
    return {"booking": spec.booking_capture, "enrolment": sorted({CAPTURE_TYPES[c] for c in keys[3]}),
            "capture_noise": float(spec.capture_noise), "mean": float(share.mean()), "p5": float(p5),
            "p50": float(p50), "p95": float(p95)}


def capture_overlap(spec: PopulationSpec, n: int = 2000) -> dict:
    """How much of a finger a booking and its enrolment have in common, for
    n identities' first searched index finger (``shared_share``): mean and
    the 5th, 50th and 95th percentiles, with the capture types compared."""
    keys = _overlap_keys(spec, n)
    return _overlap_summary(spec, keys, shared_share(spec, *keys))


def capture_noise_floor(spec: PopulationSpec, n: int = 2000, steps: int = 12) -> float | None:
    """The capture noise at which ``capture_overlap``'s median share reaches
    CITED_SHARE (bisection to 2^-steps of [0, 1]): placement more alike
    than that is more consistent than the cited cooperative users. None
    when the median reaches it even at 1 (a rolled enrolment holds nearly
    all of a plain booking however it is placed)."""
    keys = _overlap_keys(spec, n)
    points = master_points(spec.seed, keys[0], keys[1])  # the same at every capture noise

    def median(cn: float) -> float:
        return float(np.median(_held_share(dataclasses.replace(spec, capture_noise=cn), keys, points)))
    if median(1.0) >= CITED_SHARE:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if median(mid) >= CITED_SHARE else (lo, mid)
    return hi


def search_overlap(spec: PopulationSpec, n: int) -> np.ndarray:
    """Of submissions 0..n-1, each mated search's ``shared_share`` averaged
    over the fingers its mate's record holds, (n,) float64; NaN for a
    non-mated search or an unmatchable booking (placement does not apply)."""
    sub = submission_impressions(spec, 0, n)
    person, mate = submission_truth(spec, 0, n)
    out = np.full(n, np.nan)
    rows = np.flatnonzero((mate >= 0) & (person == mate))  # unmatchable bookings share nothing
    if not len(rows):
        return out
    gal = gallery_impressions(spec, 0, 0, ids=mate[rows])  # the mates' enrolled fingers
    enrolled = {(int(rows[r]), int(f)): int(c) for r, f, c in zip(gal.row, gal.finger, gal.capture)}
    pick = [t for t in range(len(sub.row)) if (int(sub.row[t]), int(sub.finger[t])) in enrolled]
    t = np.array(pick, dtype=np.int64)
    share = shared_share(spec, sub.identity[t], sub.finger[t], sub.encounter[t],
                         np.array([enrolled[(int(sub.row[i]), int(sub.finger[i]))] for i in t]))
    total = np.bincount(sub.row[t], weights=share, minlength=n)
    count = np.bincount(sub.row[t], minlength=n)
    out[rows] = total[rows] / np.maximum(count[rows], 1)
    return out


def population_facts(spec: PopulationSpec) -> dict:
    """Every fact above for one population spec."""
    caps = [c for c in ("plain", "rolled") if c in CAPTURE_TYPES]
    return {"minutiae": [minutiae_counts(spec, c) for c in caps],
            "classes": class_shares(spec.seed), "quality": quality_facts(spec),
            "overlap": {**capture_overlap(spec), "floor": capture_noise_floor(spec),
                        "cited": CITED_SHARE, "cited_iqr": CITED_SHARE_IQR}}
